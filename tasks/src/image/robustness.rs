//! Generated and mutated Dockerfiles and `.dockerignore` files fed to the parsers: no panic,
//! no hang (inputs are bounded and every pass is linear or close), and every rejection names
//! a line of the input.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::dockerfile::{parse, PlanError, PlanOptions};
use super::dockerignore::DockerIgnore;
use super::ignore_walk::Walk;

const FRAGMENTS: &[&str] = &[
    "FROM ",
    "FROM scratch",
    "FROM a AS b",
    " AS ",
    "COPY ",
    "ADD ",
    "RUN ",
    "ARG ",
    "ENV ",
    "LABEL ",
    "ONBUILD ",
    "WORKDIR",
    "USER",
    "HEALTHCHECK ",
    "SHELL ",
    "VOLUME ",
    "EXPOSE ",
    "--from=",
    "--mount=",
    "type=bind,",
    "type=cache",
    "source=",
    "from=b",
    ",,",
    "=",
    "--",
    "$",
    "${",
    "}",
    "${X:-",
    "${X:?",
    "'",
    "\"",
    "\\",
    "`",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "<<",
    "<<-EOF",
    "EOF",
    "# escape=`",
    "# syntax=x",
    "#",
    " ",
    "\t",
    "x",
    "/",
    ".",
    "..",
    "*",
    "?",
    "é",
    "\u{feff}",
    "\r",
    "http://h/x",
    "0",
    "9",
    "b",
];

fn dockerfile() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..8).prop_map(|f| f.concat()),
        0..24,
    )
    .prop_map(|lines| lines.join("\n"))
}

const SEED: &str = "ARG V=1\nFROM scratch AS base\nENV A=1\nCOPY --from=base a${V} /x\n\
                    RUN --mount=type=bind,source=s,target=/t true\nFROM base\nCOPY . /app\n";

/// The seed with bytes inserted, removed or replaced.
fn mutated() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (0usize..SEED.len(), 0u8..3, prop::sample::select(FRAGMENTS)),
        0..6,
    )
    .prop_map(|edits| {
        let mut s = SEED.to_string();
        for (at, op, frag) in edits {
            let mut at = at.min(s.len());
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            match op {
                0 => s.insert_str(at, frag),
                1 => {
                    let end = s[at..]
                        .char_indices()
                        .nth(3)
                        .map_or(s.len(), |(i, _)| at + i);
                    s.replace_range(at..end, "");
                }
                _ => {
                    let end = s[at..]
                        .char_indices()
                        .nth(1)
                        .map_or(s.len(), |(i, _)| at + i);
                    s.replace_range(at..end, frag);
                }
            }
        }
        s
    })
}

fn check_dockerfile(text: &str) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count().max(1);
    match parse(text) {
        Err(e) => prop_assert!(
            e.line >= 1 && e.line <= lines,
            "line {} of {lines}: {e}",
            e.line
        ),
        Ok(df) => {
            let args = BTreeMap::from([("V".to_string(), "2".to_string())]);
            let mut targets: Vec<Option<String>> = vec![None];
            targets.extend(df.stage_names().into_iter().map(Some));
            for target in targets {
                for bk in [false, true] {
                    let opts = PlanOptions {
                        arg_beats_image_env: bk,
                        ..PlanOptions::default()
                    };
                    if let Err(e) = df.plan_with(target.as_deref(), &args, opts) {
                        let named = matches!(e, PlanError::UnknownTarget { .. })
                            || e.to_string().contains("line ");
                        prop_assert!(named, "{e}");
                    }
                }
            }
        }
    }
    Ok(())
}

const PATTERN_CHARS: &[&str] = &[
    "*", "**", "?", "[", "]", "^", "-", "!", "\\", "/", ".", "..", "a", "b", "d", "t", "x", "0",
    " ", "#", "é", "{", "}", "\\d", "\\t", "\\x41", "\\Q",
];

fn dockerignore() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(PATTERN_CHARS), 0..6).prop_map(|f| f.concat()),
        0..10,
    )
    .prop_map(|lines| lines.join("\n"))
}

fn paths() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec(
            prop::sample::select(&["a", "b", "d", "x.go", "é", ".x", "t\t"][..]),
            1..4,
        )
        .prop_map(|segs| segs.join("/")),
        0..12,
    )
    .prop_map(|mut p| {
        p.sort();
        p.dedup();
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn generated_dockerfiles_never_panic(text in dockerfile()) {
        check_dockerfile(&text)?;
    }

    #[test]
    fn mutated_dockerfiles_never_panic(text in mutated()) {
        check_dockerfile(&text)?;
    }

    #[test]
    fn generated_dockerignores_never_panic(text in dockerignore(), paths in paths()) {
        let lines = text.split('\n').count().max(1);
        match DockerIgnore::parse(&text) {
            Err(e) => prop_assert!(e.line >= 1 && e.line <= lines, "{e}"),
            Ok(rules) => {
                // Without exceptions, the walk and "does a pattern match the path or a
                // parent" agree (the walk's quirks need a `!`).
                let exceptions = text.lines().any(|l| l.trim_start().starts_with('!'));
                let mut walk = Walk::new(&rules);
                for p in &paths {
                    let kept = walk.keeps(p, false);
                    if !exceptions {
                        prop_assert_eq!(kept, !rules.is_excluded(p), "{:?} {:?}", text, p);
                    }
                }
                let mut rules = rules;
                rules.keep_build_files(Some("Dockerfile"));
                prop_assert!(!rules.is_excluded("Dockerfile"));
            }
        }
    }
}

#[test]
fn huge_inputs_finish() {
    let mut many = String::from("FROM scratch AS s0\n");
    for i in 1..2000 {
        many.push_str(&format!(
            "FROM s{} AS s{i}\nCOPY --from=s{} x /x\n",
            i - 1,
            i - 1
        ));
    }
    let df = parse(&many).unwrap();
    assert_eq!(df.stages.len(), 2000);
    let plan = df.plan(None, &BTreeMap::new()).unwrap();
    assert_eq!(plan.stages.len(), 2000);
    // Narrowing walks the whole chain: each stage's working directory is worked out once.
    let mut chain = String::from("FROM scratch AS s0\n");
    for i in 1..2000 {
        chain.push_str(&format!(
            "FROM s{} AS s{i}\nWORKDIR d{i}\nCOPY f{i} x\n",
            i - 1
        ));
    }
    chain.push_str("FROM scratch\nCOPY --from=s1999 /d1/d2 /app\n");
    let plan = parse(&chain).unwrap().plan(None, &BTreeMap::new()).unwrap();
    let reads = plan.key_context(false, true);
    assert!(reads.reads("f2/d3/x") && !reads.reads("f1/x"), "{reads:?}");
    let long = format!("FROM scratch\nRUN true {}\n", "\\\n x ".repeat(20_000));
    assert!(parse(&long).is_ok());
    let deep = format!("FROM scratch\nARG X=1\nCOPY {} /\n", "${X:-".repeat(500));
    assert!(parse(&deep).unwrap().plan(None, &BTreeMap::new()).is_err());
}
