//! A kind's field names, read from its raw serde struct itself (one source of truth): serde
//! hands the list to `deserialize_struct`, which this deserializer records and then stops.

use serde::de::{self, Deserialize, Visitor};

/// The field names of the struct `T` deserializes as (empty for anything else).
pub fn of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect {
        fields: &mut fields,
    });
    fields
}

struct Introspect<'a> {
    fields: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("introspection only")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Introspect<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.fields = fields;
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        context: Option<toml::Spanned<String>>,
        #[serde(rename = "build_args")]
        args: Option<std::collections::BTreeMap<String, String>>,
    }

    #[test]
    fn the_fields_come_from_the_struct() {
        assert_eq!(super::of::<Raw>(), &["context", "build_args"]);
        assert!(super::of::<String>().is_empty());
    }
}
