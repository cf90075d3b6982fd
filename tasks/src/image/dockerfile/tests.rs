//! The parser's and the planner's unit tests (Docker's own tables are in tests/data/docker).

use std::collections::{BTreeMap, BTreeSet};

use super::expand::expand_word;
use super::instruction::csv_fields;
use super::lexer::{extract_builder_flags, json_string_array, parse_words, shell_words};
use super::*;

fn plan(text: &str, target: Option<&str>) -> TargetPlan {
    parse(text).unwrap().plan(target, &BTreeMap::new()).unwrap()
}

fn paths(p: &[&str]) -> ContextUse {
    ContextUse::Paths(p.iter().map(|s| s.to_string()).collect())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const SEED: &str = r#"# syntax=docker/dockerfile:1
FROM lifeos-base:latest AS base

FROM base AS deps
WORKDIR /app
COPY package.json shared/ ./
RUN --mount=type=cache,target=/root/.cache npm ci

FROM deps AS web-builder
COPY web/ ./web/
RUN npm run build:web

FROM deps AS api-builder
COPY api ./api
RUN npm run build:api

FROM base AS web-runner
COPY --from=web-builder /app/web/dist /srv/web

FROM base AS api-runner
COPY --from=api-builder /app/api/dist /srv/api
"#;

#[test]
fn seed_web_runner_reads_only_its_own_files() {
    let df = parse(SEED).unwrap();
    assert_eq!(
        df.stage_names(),
        [
            "base",
            "deps",
            "web-builder",
            "api-builder",
            "web-runner",
            "api-runner"
        ]
    );
    let p = df.plan(Some("web-runner"), &BTreeMap::new()).unwrap();
    assert_eq!(p.stages, [0, 1, 2, 4]);
    assert_eq!(p.bases, set(&["lifeos-base:latest"]));
    assert_eq!(p.context, paths(&["package.json", "shared", "web"]));
    assert!(p.context.reads("package.json"));
    assert!(p.context.reads("shared/x"));
    assert!(p.context.reads("web/index.html"));
    assert!(!p.context.reads("api/x"));
    assert!(!p.context.reads("package.json.bak"));
    assert!(!p.context.reads("webx/a"));
    assert!(p.context.reads_under("web"));
    assert!(!p.context.reads_under("api"));
}

#[test]
fn seed_default_target_is_the_last_stage() {
    let p = plan(SEED, None);
    assert_eq!(p.stages, [0, 1, 3, 5]);
    assert_eq!(p.context, paths(&["api", "package.json", "shared"]));
    assert_eq!(plan(SEED, Some("BASE")).stages, [0]);
    assert_eq!(plan(SEED, Some("base")).context, paths(&[]));
}

#[test]
fn unknown_target_lists_the_stages() {
    let df = parse(SEED).unwrap();
    match df.plan(Some("nope"), &BTreeMap::new()).unwrap_err() {
        PlanError::UnknownTarget { target, stages } => {
            assert_eq!(target, "nope");
            assert_eq!(stages, df.stage_names());
        }
        e => panic!("unexpected {e}"),
    }
    let msg = df
        .plan(Some("nope"), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"nope\"") && msg.contains("web-runner"),
        "{msg}"
    );
}

#[test]
fn global_args_substitute_in_from() {
    let text = "ARG BASE=node\nARG TAG\nARG FULL=${BASE}:${TAG:-20}\n\
                FROM ${BASE}:${TAG:-20} AS b\nFROM $FULL-slim\nFROM \"$BASE\"\n";
    let df = parse(text).unwrap();
    assert_eq!(df.global_args.len(), 3);
    let none = BTreeMap::new();
    let p = df.plan(Some("b"), &none).unwrap();
    assert_eq!(p.bases, set(&["node:20"]));
    let args = BTreeMap::from([("TAG".to_string(), "18".to_string())]);
    assert_eq!(df.plan(Some("b"), &args).unwrap().bases, set(&["node:18"]));
    let args = BTreeMap::from([("BASE".to_string(), "python".to_string())]);
    assert_eq!(
        df.plan(Some("b"), &args).unwrap().bases,
        set(&["python:20"])
    );
    // FULL's default is expanded with the earlier ARGs.
    let all = df.plan(None, &none).unwrap();
    assert_eq!(all.bases, set(&["node"]));
    assert_eq!(all.stages, [2]);
    let p = parse(text).unwrap().plan(Some("stage"), &none);
    assert!(matches!(p, Err(PlanError::UnknownTarget { .. })));
    let p = parse("FROM b\nFROM a AS x\n").unwrap();
    assert_eq!(p.plan(None, &none).unwrap().bases, set(&["a"]));
}

#[test]
fn from_args_resolve_to_stages_and_empty_bases_fail() {
    let text = "ARG STAGE=builder\nFROM alpine AS builder\nFROM $STAGE\n";
    let p = plan(text, None);
    assert_eq!(p.stages, [0, 1]);
    assert_eq!(p.bases, set(&["alpine"]));
    let err = parse("ARG X\nFROM $X\n")
        .unwrap()
        .plan(None, &BTreeMap::new())
        .unwrap_err();
    assert!(matches!(err, PlanError::EmptyBase { line: 2, .. }), "{err}");
    let err = parse("ARG X\nFROM ${X:?required}\n")
        .unwrap()
        .plan(None, &BTreeMap::new())
        .unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile line 2: X: required");
}

#[test]
fn copy_dot_reads_everything() {
    assert_eq!(plan("FROM a\nCOPY . .\n", None).context, ContextUse::All);
    assert_eq!(
        plan("FROM a\nCOPY ./ /app\n", None).context,
        ContextUse::All
    );
    assert_eq!(plan("FROM a\nCOPY / /app\n", None).context, ContextUse::All);
    assert_eq!(plan("FROM a\nADD .. /app\n", None).context, ContextUse::All);
    assert!(ContextUse::All.reads("anything/at/all"));
    assert!(ContextUse::All.reads_under("x"));
}

#[test]
fn sources_are_cleaned() {
    let p = plan("FROM a\nCOPY ./src/ /a/../b/ //lib/x/.. /dst\n", None);
    assert_eq!(p.context, paths(&["b", "lib", "src"]));
}

#[test]
fn numeric_from_and_external_images() {
    let text = "FROM alpine\nRUN true\nFROM debian AS two\nCOPY --from=0 /x /x\n\
                COPY --from=nginx:alpine /etc/nginx /etc/nginx\n\
                COPY --from=scratch /a /b\nFROM scratch\nCOPY --from=two /x /x\n";
    let p = plan(text, None);
    assert_eq!(p.stages, [0, 1, 2]);
    assert_eq!(p.bases, set(&["alpine", "debian", "nginx:alpine"]));
    assert_eq!(p.context, paths(&[]));
    let err = parse("FROM a\nCOPY --from=3 /x /x\n")
        .unwrap()
        .plan(None, &BTreeMap::new())
        .unwrap_err();
    assert!(
        matches!(err, PlanError::InvalidStageIndex { line: 2, .. }),
        "{err}"
    );
    let err = parse("FROM a AS one\nCOPY --from=1 /x /x\nFROM b\n")
        .unwrap()
        .plan(Some("one"), &BTreeMap::new())
        .unwrap_err();
    assert!(
        matches!(err, PlanError::LaterStage { line: 2, .. }),
        "{err}"
    );
    // A stage defined later is not a stage here: Docker reads the name as an image.
    let p = plan(
        "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n",
        Some("one"),
    );
    assert_eq!(p.bases, set(&["a", "two"]));
    let err = parse("FROM a\nCOPY --from=$X /x /x\n").unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn run_mounts() {
    let text = "FROM a AS tools\nFROM b\n\
                RUN --mount=type=bind,source=scripts,target=/s \\\n    \
                --mount=type=cache,target=/c \\\n    \
                --mount=type=secret,id=x \\\n    \
                --mount=type=bind,from=tools,source=/bin,target=/t \\\n    \
                --mount=type=cache,from=golang:1.22,target=/g \\\n    \
                --mount=\"type=bind,src=conf dir,target=/conf\" make\n";
    let p = plan(text, None);
    assert_eq!(p.stages, [0, 1]);
    assert_eq!(p.bases, set(&["a", "b", "golang:1.22"]));
    assert_eq!(p.context, paths(&["conf dir", "scripts"]));
    // A bind mount without a source is the whole context.
    let p = plan("FROM a\nRUN --mount=target=/ctx make\n", None);
    assert_eq!(p.context, ContextUse::All);
    let err = parse("FROM a\nRUN --mount=type=bind,from=$X,target=/x true\n").unwrap_err();
    assert_eq!(err.line, 2);
    let err = parse("FROM a\nRUN --mount=type=nfs,target=/x true\n").unwrap_err();
    assert!(err.message.contains("unsupported mount type"), "{err}");
}

#[test]
fn heredocs_are_skipped_and_are_not_sources() {
    let text = "FROM alpine\n\
                RUN <<EOF\nFRM this is not an instruction\nCOPY secret /x\nEOF\n\
                COPY <<-\"END\" /etc/conf\n\tkey=value\n\tEND\n\
                RUN --mount=type=cache,target=/c <<'A' bash && cat <<B\necho\nA\nb body\nB\n\
                COPY <<one 2<<two real.txt /dst/\nx\none\ny\ntwo\n\
                RUN << SPACED\nz\nSPACED\n\
                COPY after.txt /\n";
    let df = parse(text).unwrap();
    let p = df.plan(None, &BTreeMap::new()).unwrap();
    assert_eq!(p.context, paths(&["after.txt", "real.txt"]));
    let err = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
    assert_eq!(
        (err.line, err.message.as_str()),
        (2, "unterminated heredoc")
    );
    // JSON form cannot open a heredoc; "<<" in a quoted word does not either.
    let p = plan(
        "FROM a\nRUN [\"sh\", \"<<EOF\"]\nRUN echo \"<<EOF\"\nCOPY x /\n",
        None,
    );
    assert_eq!(p.context, paths(&["x"]));
}

#[test]
fn continuation_lines_and_comments() {
    let text = "FROM alpine\nCOPY a \\\n  # a comment inside\n\n  b \\  \n  /dst/\n\
                RUN echo \\\\\nCOPY c /\n";
    let df = parse(text).unwrap();
    assert_eq!(df.stages[0].copies[0].sources, ["a", "b"]);
    assert_eq!(df.stages[0].copies[0].line, 2);
    // `\\` at the end is an escaped escape, not a continuation.
    assert_eq!(df.stages[0].copies[1].sources, ["c"]);
    assert_eq!(df.stages[0].copies[1].line, 8);
}

#[test]
fn escape_directive_changes_the_continuation_char() {
    let text = "# escape=`\n# syntax=docker/dockerfile:1\nFROM mcr.microsoft.com/windows\n\
                COPY a `\n  b\\c `\n  C:\\dst\\\nCOPY \"x y\" `\"q`\" /\n";
    let df = parse(text).unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.stages[0].copies[0].sources, ["a", "b\\c"]);
    assert_eq!(df.stages[0].copies[1].sources, ["\"x", "y\"", "\"q\""]);
    // Directives only count at the very top.
    let df = parse("FROM a\n# escape=`\nCOPY a \\\n b /\n").unwrap();
    assert_eq!(df.escape, '\\');
    assert_eq!(df.stages[0].copies[0].sources, ["a", "b"]);
    let df = parse("\n# escape=`\nFROM a\nCOPY a \\\n b /\n").unwrap();
    assert_eq!(df.escape, '\\');
    let err = parse("# escape=x\nFROM a\n").unwrap_err();
    assert_eq!(err.line, 1);
    let err = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn unknown_instruction_reports_its_line() {
    let err = parse("FROM alpine\nRUN echo \\\n  hi\n\n# c\nFRM x\n").unwrap_err();
    assert_eq!(err.line, 6);
    assert_eq!(err.message, "unknown instruction: FRM");
    assert_eq!(
        err.to_string(),
        "Dockerfile line 6: unknown instruction: FRM"
    );
    assert_eq!(
        parse("RUN x\n").unwrap_err().message,
        "no build stage in current context"
    );
    assert!(parse("ARG A=1\n").is_err());
    assert!(parse("").is_err());
    assert_eq!(parse("FROM a AS 1x\n").unwrap_err().line, 1);
    assert_eq!(parse("FROM a b\n").unwrap_err().line, 1);
    assert_eq!(parse("FROM a\nCOPY onlyone\n").unwrap_err().line, 2);
}

#[test]
fn keywords_and_stage_names_are_case_insensitive() {
    let text = "from alpine As Builder\nRun echo\ncopy src /src\n\
                FROM debian\nCoPy a b\nCOPY --from=BUILDER /src /src\n";
    let p = plan(text, None);
    assert_eq!(p.stages, [0, 1]);
    assert_eq!(p.bases, set(&["alpine", "debian"]));
    assert_eq!(p.context, paths(&["a", "src"]));
    assert_eq!(
        parse(text).unwrap().stages[0].name.as_deref(),
        Some("builder")
    );
}

#[test]
fn json_form_copy() {
    let df = parse("FROM a\nCOPY [\"a b\", \"c\", \"/dst/\"]\nADD [\"\\u00e9t\\u00e9\", \"/\"]\n")
        .unwrap();
    assert_eq!(df.stages[0].copies[0].sources, ["a b", "c"]);
    assert_eq!(df.stages[0].copies[1].sources, ["été"]);
    let p = df.plan(None, &BTreeMap::new()).unwrap();
    assert!(p.context.reads("a b/x"));
    assert!(p.context.reads("c"));
    assert!(!p.context.reads("a"));
}

#[test]
fn copy_flags_are_ignored_and_add_urls_skipped() {
    let text = "FROM a\n\
                COPY --chown=1:1 --chmod=644 --link --parents --exclude=*.md docs/ /d\n\
                ADD --checksum=sha256:abc https://example.com/x.tgz /x\n\
                ADD git@github.com:o/r.git /r\nADD local.tgz /\n";
    assert_eq!(plan(text, None).context, paths(&["docs", "local.tgz"]));
}

#[test]
fn variables_in_sources_mean_everything() {
    let text = "FROM a\nARG DIR=src\nCOPY $DIR /x\n";
    assert_eq!(plan(text, None).context, ContextUse::All);
    let p = plan(
        "FROM a\nRUN --mount=type=bind,source=${X},target=/x true\n",
        None,
    );
    assert_eq!(p.context, ContextUse::All);
}

#[test]
fn buildkit_platform_args_are_unknown_unless_given() {
    let texts = [
        "FROM scratch\nARG TARGETARCH\nCOPY dist/$TARGETARCH/app /app\n",
        "FROM scratch\nARG TARGETARCH=arm64\nCOPY dist/${TARGETARCH}/app /app\n",
        "ARG TARGETARCH=arm64\nFROM scratch\nARG TARGETARCH\nCOPY dist/$TARGETARCH/app /app\n",
        "FROM scratch\nARG BUILDPLATFORM\nCOPY dist/$BUILDPLATFORM/app /app\n",
    ];
    for text in texts {
        let df = parse(text).unwrap();
        for buildkit in [true, false] {
            let opts = PlanOptions {
                arg_beats_image_env: buildkit,
                ..PlanOptions::default()
            };
            let p = df.plan_with(None, &BTreeMap::new(), opts).unwrap();
            assert!(p.context.reads("dist/amd64/app"), "{text:?} {opts:?}");
        }
    }
    // Given as a build arg, the value is known.
    let args = BTreeMap::from([("TARGETARCH".to_string(), "arm64".to_string())]);
    let p = parse(texts[0]).unwrap().plan(None, &args).unwrap();
    assert_eq!(p.context, paths(&["dist/arm64/app"]));
}

#[test]
fn wildcard_sources() {
    let p = plan(
        "FROM a\nCOPY s* *.json conf/[ab].yml lib/**/*.ts /dst/\n",
        None,
    );
    let c = &p.context;
    assert!(c.reads("src/a.txt"));
    assert!(c.reads("s"));
    assert!(c.reads("package.json"));
    assert!(!c.reads("x/package.json"));
    assert!(c.reads("conf/a.yml"));
    assert!(!c.reads("conf/c.yml"));
    assert!(c.reads("lib/deep/x.ts"));
    assert!(!c.reads("other/x"));
    assert!(c.reads_under("conf"));
    assert!(c.reads_under("lib/deep"));
    assert!(!c.reads_under("other"));
    assert!(c.reads_under(""));
    assert!(!c.reads(""));
    // Escaped wildcards are literal.
    let p = plan("FROM a\nCOPY \"a\\\\*b\" /\n", None);
    assert_eq!(p.context, paths(&["a\\*b"]));
    assert!(p.context.reads("a*b"));
    assert!(p.context.reads("a\\*b/c"));
    assert!(!p.context.reads("axb"));
}

#[test]
fn onbuild_triggers_run_in_child_stages() {
    let text =
        "FROM alpine AS p\nONBUILD COPY conf /conf\nONBUILD RUN --mount=from=tools,target=/t x\n\
                FROM busybox AS tools\nFROM p AS c\n";
    let p = plan(text, Some("p"));
    assert_eq!((p.stages, p.context), (vec![0], paths(&[])));
    // The trigger references `tools`, defined after `p` but before `c`.
    let p = plan(text, Some("c"));
    assert_eq!(p.stages, [0, 1, 2]);
    assert_eq!(p.bases, set(&["alpine", "busybox"]));
    assert_eq!(p.context, paths(&["conf"]));
    assert!(parse("FROM a\nONBUILD FROM b\n").is_err());
    assert!(parse("FROM a\nONBUILD ONBUILD RUN x\n").is_err());
    let p = plan("FROM a\nONBUILD RUN <<EOF\nFRM\nEOF\nFROM scratch\n", None);
    assert!(p.bases.is_empty());
}

#[test]
fn builder_flags() {
    assert_eq!(
        extract_builder_flags("--a=1 --b=\"x y\" --c -- --d e"),
        (
            " --d e",
            vec!["--a=1".into(), "--b=x y".into(), "--c".into()]
        )
    );
    assert_eq!(extract_builder_flags("src dst"), ("src dst", vec![]));
    assert_eq!(extract_builder_flags("--only"), ("", vec!["--only".into()]));
}

#[test]
fn csv_and_words() {
    assert_eq!(csv_fields("a=1,\"b=2,3\",c"), ["a=1", "b=2,3", "c"]);
    assert_eq!(csv_fields("a,"), ["a", ""]);
    assert_eq!(parse_words("A=\"x y\" B", '\\'), ["A=\"x y\"", "B"]);
    assert_eq!(
        shell_words("RUN <<  EOF x'a b'", '\\', true),
        ["RUN", "<<EOF", "x'a b'"]
    );
    assert_eq!(json_string_array("[] x"), Some(vec![]));
    assert_eq!(json_string_array("[1]"), None);
    assert_eq!(json_string_array("[\"a\""), None);
    assert_eq!(
        json_string_array("[\"\\ud83d\\ude00\"]"),
        Some(vec!["😀".into()])
    );
}

#[test]
fn word_expansion() {
    let env = BTreeMap::from([
        ("A".to_string(), "1".to_string()),
        ("E".to_string(), String::new()),
    ]);
    let x = |w: &str| expand_word(w, '\\', &env);
    assert_eq!(
        x("$A-${A}-${B:-d}-${E:-d}-${E-d}-${A:+p}-${B+p}").unwrap(),
        "1-1-d-d--p-"
    );
    assert_eq!(x("'$A'\"$A\"\\$A$").unwrap(), "$A1$A$");
    assert_eq!(x("${B:-${A}x}").unwrap(), "1x");
    assert!(x("${A").is_err());
    assert!(x("${A#x}").is_err());
    assert!(x("\"open").is_err());
    assert!(x("${E:?}").is_err());
    assert_eq!(x("${E?}").unwrap(), "");
}

fn err(text: &str) -> (usize, String) {
    let e = parse(text).map_err(|e| (e.line, e.message)).and_then(|df| {
        df.plan(None, &BTreeMap::new())
            .map(|_| ())
            .map_err(|e| (0, e.to_string()))
    });
    e.expect_err(text)
}

#[test]
fn instructions_docker_rejects_name_their_line() {
    for (text, line, needle) in [
        ("FROM a\nMAINTAINER\n", 2, "exactly one argument"),
        ("FROM a\nWORKDIR\n", 2, "exactly one argument"),
        ("FROM a\nUSER\n", 2, "exactly one argument"),
        ("FROM a\nSTOPSIGNAL\n", 2, "exactly one argument"),
        ("FROM a\nENV\n", 2, "at least one argument"),
        ("FROM a\nLABEL\n", 2, "at least one argument"),
        ("FROM a\nHEALTHCHECK\n", 2, "at least one argument"),
        ("FROM a\nEXPOSE\n", 2, "at least one argument"),
        ("FROM a\nVOLUME\n", 2, "at least one argument"),
        ("FROM a\n\nENV PATH\n", 3, "must have two arguments"),
        ("FROM a\nCOPY --user=me a /\n", 2, "Unknown flag: user"),
        ("FROM a\nMAINTAINER --boo x\n", 2, "Unknown flag: boo"),
        (
            "FROM a\nRUN --mount=type=bind,,,=,from=,source= true\n",
            2,
            "invalid field ''",
        ),
        (
            "FROM a\nRUN --mount=type=bind,foo=1 true\n",
            2,
            "unexpected key 'foo'",
        ),
    ] {
        let (l, m) = err(text);
        assert_eq!(l, line, "{text:?}: {m}");
        assert!(m.contains(needle), "{text:?}: {m}");
    }
    // Found by the plan (reachable stages), named by line too.
    let (_, m) = err("FROM a\nCOPY http://example.com/x /\n");
    assert!(m.contains("line 2") && m.contains("URL"), "{m}");
    let (_, m) = err("FROM scratch\nCOPY ${X:- /a\n");
    assert!(m.contains("line 2") && m.contains("missing '}'"), "{m}");
    let long = format!("FROM a\nRUN echo {}\n", "x".repeat(65_536));
    assert_eq!(err(&long).0, 2);
    assert!(parse(&format!("FROM a\nRUN echo {}\n", "x".repeat(65_000))).is_ok());
}

#[test]
fn copy_sources_resolve_known_variables() {
    let opts = PlanOptions {
        arg_beats_image_env: true,
        ..PlanOptions::default()
    };
    let p = |text: &str, args: &[(&str, &str)], opts| {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(text)
            .unwrap()
            .plan_with(None, &args, opts)
            .unwrap()
            .context
    };
    // From scratch every value is known.
    let text = "FROM scratch\nARG SRC=app\nENV CONF=etc\nCOPY ${SRC}/ $CONF/app.cfg /x/\n";
    assert_eq!(
        p(text, &[], PlanOptions::default()),
        paths(&["app", "etc/app.cfg"])
    );
    assert_eq!(
        p(text, &[("SRC", "web")], PlanOptions::default()),
        paths(&["etc/app.cfg", "web"])
    );
    // An image may set any ENV: an ARG wins over it with BuildKit only; ENV always.
    let text = "FROM node\nARG SRC=app\nENV CONF=etc\nCOPY $SRC /x\nCOPY $CONF /y\n";
    assert_eq!(p(text, &[], opts), paths(&["app", "etc"]));
    assert_eq!(p(text, &[], PlanOptions::default()), ContextUse::All);
    // An unknown variable, or one used before its ARG, is "anything".
    assert_eq!(p("FROM node\nCOPY $HOME/x /\n", &[], opts), ContextUse::All);
    assert_eq!(
        p("FROM scratch\nCOPY a$X /\nARG X=1\n", &[], opts),
        paths(&["a"])
    );
    // ENV passes to child stages; ARG does not (certainly).
    let text = "FROM scratch AS p\nENV D=lib\nARG A=x\nFROM p\nCOPY $D $A /\n";
    assert_eq!(p(text, &[], opts), ContextUse::All);
    let text = "FROM scratch AS p\nENV D=lib\nFROM p\nCOPY $D /\n";
    assert_eq!(p(text, &[], opts), paths(&["lib"]));
    // A global ARG reaches a stage through `ARG NAME`.
    let text = "ARG V=v1\nFROM scratch\nARG V\nCOPY dist/$V /\n";
    assert_eq!(p(text, &[], opts), paths(&["dist/v1"]));
}

#[test]
fn one_tokenizer_three_rule_sets() {
    use super::lexer::{words, Rules};
    // Flags: quotes dropped, `\` escapes even inside single quotes.
    assert_eq!(
        extract_builder_flags("--a='x\\'y' rest"),
        ("rest", vec!["--a=x'y".to_string()])
    );
    // Words know where they were: the rest of the line starts at the next word.
    let rules = Rules {
        escape: '\\',
        keep_quoting: false,
        escape_in_single_quotes: false,
        heredoc_ops: false,
    };
    let w: Vec<_> = words("  ab \"c d\"  é", rules)
        .map(|w| (w.text, w.start, w.end))
        .collect();
    assert_eq!(
        w,
        [
            ("ab".into(), 2, 4),
            ("c d".into(), 5, 10),
            ("é".into(), 12, 14)
        ]
    );
    // A quoted empty word is a word; a lone trailing escape is not.
    assert_eq!(parse_words("\"\" \\", '\\'), ["\"\""]);
    assert_eq!(shell_words("'' x", '\\', false), ["", "x"]);
    // JSON form through serde_json: escapes, and anything after the array is ignored.
    assert_eq!(
        json_string_array(" [\"a\\\"b\", \"\\/\"] trailing"),
        Some(vec!["a\"b".into(), "/".into()])
    );
    assert_eq!(json_string_array("[\"a\", 1]"), None);
    assert_eq!(json_string_array("x [\"a\"]"), None);
}

#[test]
fn buildkit_target_args_come_from_the_tasks_platform() {
    let text = "ARG TARGETARCH=x\nFROM scratch\nARG TARGETARCH\nARG TARGETOS\n\
                ARG TARGETPLATFORM\nARG TARGETVARIANT\nARG BUILDARCH\n\
                COPY dist/$TARGETARCH/app $TARGETPLATFORM/x ${TARGETOS}.cfg v$TARGETVARIANT /\n";
    let df = parse(text).unwrap();
    let none = BTreeMap::new();
    let opts = |p: &str| PlanOptions {
        arg_beats_image_env: true,
        target_platform: KnownPlatform::parse(p),
    };
    let p = df.plan_with(None, &none, opts("linux/arm64")).unwrap();
    assert_eq!(
        p.context,
        paths(&["dist/arm64/app", "linux.cfg", "linux/arm64/x", "v"])
    );
    // A build arg still wins; the BUILD* ones are the engine's platform: unknown.
    let args = BTreeMap::from([("TARGETARCH".to_string(), "amd64".to_string())]);
    let p = df.plan_with(None, &args, opts("linux/arm64")).unwrap();
    assert!(p.context.reads("dist/amd64/app") && !p.context.reads("dist/arm64/app"));
    let p = parse("FROM scratch\nARG BUILDARCH\nCOPY $BUILDARCH /\n").unwrap();
    let p = p.plan_with(None, &none, opts("linux/amd64")).unwrap();
    assert_eq!(p.context, ContextUse::All);
    // Platforms BuildKit normalises, or no platform at all: unknown, so anything.
    for platform in ["linux/arm64/v8", "linux/arm", "Linux/amd64", "amd64", ""] {
        let p = df.plan_with(None, &none, opts(platform)).unwrap();
        assert!(p.context.reads("dist/ppc64le/app"), "{platform}");
    }
}

/// What the key covers when no context file is a symlink.
fn key_reads(text: &str) -> ContextUse {
    plan(text, None).key_context(false, true).clone()
}

/// Does the key (no symlinks) cover each of `yes` and none of `no`?
#[track_caller]
fn covers(text: &str, yes: &[&str], no: &[&str]) {
    let k = key_reads(text);
    for f in yes {
        assert!(k.reads(f), "{f} not covered by {k:?} of\n{text}");
    }
    for f in no {
        assert!(!k.reads(f), "{f} covered by {k:?} of\n{text}");
    }
}

const COPIES_SRC: &str = "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\n\
                          FROM busybox\nCOPY --from=a /src /app\n";

#[test]
fn copy_from_a_stage_counts_only_what_lands_under_the_copied_path() {
    let p = plan(COPIES_SRC, None);
    // The plain reads stay (watch and the symlink fallback use them).
    assert_eq!(p.context, paths(&["docs", "src"]));
    assert_eq!(p.narrowed, Some(paths(&["src"])));
    assert_eq!(p.key_context(false, true), &paths(&["src"]));
    // A symlink in the context may alias one path to another: everything counts.
    assert_eq!(p.key_context(true, true), &paths(&["docs", "src"]));
    // Nothing to narrow: no `narrowed`.
    assert_eq!(plan("FROM scratch\nCOPY a /a\n", None).narrowed, None);
    // A sub-path of a directory copy: only that part of the source.
    covers(
        "FROM scratch AS a\nCOPY src /src\nFROM busybox\nCOPY --from=a /src/sub /app\n",
        &["src/sub/x", "src/sub"],
        &["src/other", "src/x"],
    );
    // A file copied into the directory: the file itself.
    covers(
        "FROM scratch AS a\nCOPY main.rs lib.rs /src/\nFROM busybox\nCOPY --from=a /src/main.rs /app\n",
        &["main.rs"],
        &["lib.rs"],
    );
    // A wildcard `--from` source counts its literal directory.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /src/*.js /app/\n",
        &["src/a.js", "src/b.txt"],
        &["docs/d"],
    );
}

#[test]
fn what_lands_under_the_copied_path_from_anywhere_counts() {
    // A directory copied under the path.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /src/docs\nCOPY other /other\n\
         FROM busybox\nCOPY --from=a /src /app\n",
        &["src/x", "docs/d"],
        &["other/o"],
    );
    // `COPY . /`: the context's own `src` lands at /src.
    covers(
        "FROM scratch AS a\nCOPY . /\nFROM busybox\nCOPY --from=a /src /app\n",
        &["src/x", "src"],
        &["docs/d", "Dockerfile"],
    );
    assert_eq!(
        key_reads("FROM scratch AS a\nCOPY . /\nFROM busybox\nCOPY --from=a / /app\n"),
        ContextUse::All
    );
    // A copy to a parent of the path: what lands below it, and a file named like it.
    covers(
        "FROM scratch AS a\nCOPY x /\nCOPY src /\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /src /app\n",
        &["x/src/f", "src", "src/f"],
        &["x/other", "x", "docs/d"],
    );
    // Wildcards under the path count whole.
    covers(
        "FROM scratch AS a\nCOPY s* /\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /src /app\n",
        &["src/x", "sx/y"],
        &["docs/d"],
    );
    // Relative to WORKDIR (itself relative, and from a variable).
    covers(
        "FROM scratch AS a\nENV TOP=/srv\nWORKDIR $TOP\nWORKDIR src\nCOPY lib ./lib\n\
         COPY docs ../docs\nCOPY cfg .\nFROM busybox\nCOPY --from=a /srv/src /app\n",
        &["lib/l", "cfg/c"],
        &["docs/d"],
    );
    // A destination from a variable.
    covers(
        "FROM scratch AS a\nARG DEST=/src\nCOPY lib $DEST/lib\nCOPY docs /docs\n\
         FROM busybox\nCOPY --from=a /src /app\n",
        &["lib/l"],
        &["docs/d"],
    );
}

#[test]
fn stages_chained_by_copy_from_or_from_narrow_through() {
    // a → b → target by `COPY --from`.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\n\
         FROM scratch AS b\nCOPY --from=a /src /bsrc\nCOPY other /other\n\
         FROM busybox\nCOPY --from=b /bsrc /app\n",
        &["src/x"],
        &["docs/d", "other/o"],
    );
    // b copies all of a to /all, the target copies /all/src.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\n\
         FROM scratch AS b\nCOPY --from=a / /all\nFROM busybox\nCOPY --from=b /all/src /app\n",
        &["src/x"],
        &["docs/d"],
    );
    // b built FROM a: a's content at the path is still there.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\n\
         FROM a AS b\nCOPY other /other\nCOPY more /src/more\nFROM busybox\nCOPY --from=b /src /app\n",
        &["src/x", "more/m"],
        &["docs/d", "other/o"],
    );
    // A stage also used wholly (built FROM, or mounted) counts wholly.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\nFROM a\nCOPY --from=a /src /app\n",
        &["src/x", "docs/d"],
        &[],
    );
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\nFROM busybox\n\
         COPY --from=a /src /app\nRUN --mount=from=a,target=/m true\n",
        &["src/x", "docs/d"],
        &[],
    );
    // A RUN in the target does not matter: it sees only what was copied.
    covers(
        "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\nFROM busybox\n\
         COPY --from=a /src /app\nRUN ls /app\n",
        &["src/x"],
        &["docs/d"],
    );
}

/// (narrowed reads, what they need of base images).
fn narrowing(text: &str) -> (Option<ContextUse>, Vec<(String, Vec<String>)>) {
    let p = plan(text, None);
    let needs = p
        .narrow_needs
        .iter()
        .map(|(r, ps)| (r.clone(), ps.iter().cloned().collect()))
        .collect();
    (p.narrowed, needs)
}

fn need(image: &str, paths: &[&str]) -> (String, Vec<String>) {
    (image.into(), paths.iter().map(|p| p.to_string()).collect())
}

#[test]
fn a_stage_on_a_base_image_narrows_if_the_image_has_no_links_there() {
    let text = "FROM busybox AS a\nCOPY src /src\nCOPY docs /docs\n\
                FROM busybox\nCOPY --from=a /src /app\n";
    let p = plan(text, None);
    // Every destination and every path copied out must be link-free in the image.
    assert_eq!(
        narrowing(text),
        (
            Some(paths(&["src"])),
            vec![need("busybox", &["/docs", "/src"])]
        )
    );
    assert_eq!(p.key_context(false, true), &paths(&["src"]));
    // Not checked (or not link-free): the whole reads.
    assert_eq!(p.key_context(false, false), &paths(&["docs", "src"]));
    assert_eq!(p.key_context(true, true), &paths(&["docs", "src"]));
    // A scratch chain needs nothing: checked or not, it narrows.
    let p = plan(COPIES_SRC, None);
    assert!(p.narrow_needs.is_empty());
    assert_eq!(p.key_context(false, false), &paths(&["src"]));
    // Through in-file parents: the image the chain starts from; an absolute WORKDIR makes
    // relative destinations known.
    assert_eq!(
        narrowing(
            "FROM lifeos-base AS p\nCOPY other /opt/o\nFROM p AS a\nWORKDIR /w\nCOPY src s\n\
             COPY docs /docs\nFROM busybox\nCOPY --from=a /w/s /app\n"
        ),
        (
            Some(paths(&["src"])),
            vec![need("lifeos-base", &["/docs", "/opt/o", "/w/s"])]
        )
    );
    // A stage copied from by another: its paths and destinations too; each image its own.
    assert_eq!(
        narrowing(
            "FROM alpine AS a\nCOPY src /src\nCOPY docs /docs\nFROM busybox AS b\n\
             COPY --from=a /src /b\nCOPY other /other\nFROM scratch\nCOPY --from=b /b /app\n"
        ),
        (
            Some(paths(&["src"])),
            vec![
                need("alpine", &["/docs", "/src"]),
                need("busybox", &["/b", "/other"])
            ]
        )
    );
    // A stage used wholly asks nothing of its image.
    assert_eq!(
        narrowing(
            "FROM scratch AS a\nCOPY src /src\nCOPY docs /docs\nFROM busybox AS b\n\
             COPY --from=a /src /b\nFROM b\n"
        ),
        (Some(paths(&["src"])), vec![])
    );
    // What makes a scratch stage count whole still does on an image.
    for extra in ["RUN true\n", "ADD x.tar /x\n", "COPY --from=alpine /x /x\n"] {
        let (n, needs) = narrowing(&format!(
            "FROM busybox AS a\n{extra}COPY src /src\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /src /app\n"
        ));
        assert_eq!((n, needs), (None, vec![]), "{extra}");
    }
}

#[test]
fn uncertain_stages_count_whole() {
    let whole = |text: &str| {
        let p = plan(text, None);
        assert_eq!(p.narrowed, None, "{text}");
        assert!(
            p.context.reads("docs/d") && p.context.reads("src/x"),
            "{text}"
        );
    };
    let tail = "COPY src /src\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /src /app\n";
    // On a base image, a relative destination lands below its unknown working directory.
    whole(
        "FROM busybox AS a\nCOPY src src\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /src /app\n",
    );
    whole("FROM busybox AS a\nWORKDIR x\nCOPY src .\nCOPY docs /docs\nFROM busybox\nCOPY --from=a /x /app\n");
    // A RUN may move anything anywhere; ADD extracts local archives (links too).
    whole(&format!("FROM scratch AS a\nRUN true\n{tail}"));
    whole(&format!("FROM scratch AS p\nRUN true\nFROM p AS a\n{tail}"));
    whole(&format!("FROM scratch AS a\nADD x.tar /x\n{tail}"));
    whole(&format!(
        "FROM scratch AS a\nADD https://example.com/x /x\n{tail}"
    ));
    // ONBUILD triggers of an in-file parent run in the stage.
    whole(&format!(
        "FROM scratch AS p\nONBUILD RUN true\nFROM p AS a\n{tail}"
    ));
    // Content from an image or from a stage that is not symlink-free may hold links.
    whole(&format!(
        "FROM scratch AS a\nCOPY --from=busybox /bin /bin\n{tail}"
    ));
    whole(&format!(
        "FROM scratch AS r\nRUN ln -s /docs /src\nFROM scratch AS a\nCOPY --from=r / /\n{tail}"
    ));
    // `--parents` / `--exclude` reshape what lands where.
    whole(&format!("FROM scratch AS a\nCOPY --parents x/y /\n{tail}"));
    // A destination the plan cannot resolve (a parent's ARG may or may not reach it).
    whole(&format!(
        "FROM scratch AS p\nARG D=/x\nFROM p AS a\nCOPY docs $D\n{tail}"
    ));
    whole(&format!(
        "FROM scratch AS p\nARG D=/x\nFROM p AS a\nWORKDIR $D\nCOPY docs d\n{tail}"
    ));
    // JSON form with what the builder may still process.
    whole(&format!(
        "FROM scratch AS a\nCOPY [\"docs\", \"$X\"]\n{tail}"
    ));
    // The target copies a path from a variable it cannot resolve: the stage counts whole.
    whole(&format!(
        "FROM scratch AS a\n{}",
        tail.replace("--from=a /src", "--from=a $NOPE")
    ));
}
