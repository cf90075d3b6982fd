//! What an image task sends to the builder: a Dockerfile outside the context, build args,
//! several tags. The Docker CLI is the oracle where it builds the same thing.

use std::collections::BTreeSet;

use crate::support::{docker, DockerFx};

/// Files under /ctx in `image`, sorted.
fn listing(fx: &DockerFx, image: &str) -> BTreeSet<String> {
    fx.cli_run(
        image,
        &["sh", "-c", "cd /ctx && find . -type f | sed 's|^./||'"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn dockerfile_outside_the_context(builder: &str) {
    let fx = DockerFx::new();
    fx.p.file("ctx/a.txt", "a")
        .file("ctx/sub/b.txt", "b")
        .file(
            "docker/app.Dockerfile",
            &format!("FROM {}\nCOPY . /ctx\n", fx.base()),
        )
        .config(&format!(
            "[tasks.app]\nkind = \"image\"\ncontext = \"ctx\"\ndockerfile = \"docker/app.Dockerfile\"\ntag = \"{}\"\nbuilder = \"{builder}\"\nlabels = {{ \"lifeos.test\" = \"{}\" }}\n",
            fx.tag("app"),
            fx.id
        ));
    // Without a .dockerignore in the context, then with one (lifeos adds its line to it).
    for with_ignore in [false, true] {
        if with_ignore {
            fx.p.file("ctx/.dockerignore", "*.log\n")
                .file("ctx/skip.log", "skipped");
        }
        let r = fx.p.json(&["build"]);
        assert_eq!(r.code, 0, "{}", r.all());
        let ours = listing(&fx, &fx.tag("app"));
        assert!(
            !ours.iter().any(|f| f.contains("dockerfile")),
            "the Dockerfile sent with the context was copied into the image: {ours:?}"
        );
        // The oracle: `docker build -f <outside> ctx` (the CLI hides the Dockerfile it sends).
        let label = format!("lifeos.test={}", fx.id);
        let oracle = fx.tag(&format!("oracle{}", with_ignore as u8));
        let mut args = vec!["build", "-q", "--label", &label, "-t", &oracle];
        let df = fx.p.p("docker/app.Dockerfile");
        let ctx = fx.p.p("ctx");
        args.extend(["-f", df.to_str().unwrap(), ctx.to_str().unwrap()]);
        let env = if builder == "buildkit" { "1" } else { "0" };
        let o = std::process::Command::new("docker")
            .args(&args)
            .env("DOCKER_BUILDKIT", env)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            ours,
            listing(&fx, &oracle),
            "lifeos's image differs from Docker's"
        );
        assert!(
            ours.contains("a.txt") && ours.contains("sub/b.txt"),
            "{ours:?}"
        );
        assert!(!ours.contains("skip.log"), "{ours:?}");
    }
}

// BuildKit: not yet; the Dockerfile is in its context (see image/build.rs).

#[test]
fn a_dockerfile_outside_the_context_is_not_copied_into_the_image_with_the_classic_builder() {
    dockerfile_outside_the_context("classic");
}

#[test]
fn build_args_reach_the_build_and_every_tag_names_the_image() {
    let fx = DockerFx::new();
    fx.p.file(
        "b/Dockerfile",
        &format!(
            "FROM {}\nARG GREETING=unset\nARG OTHER=unset\nRUN echo \"$GREETING $OTHER\" > /greeting\n",
            fx.base()
        ),
    );
    let config = |greeting: &str| {
        format!(
            "[tasks.b]\nkind = \"image\"\ncontext = \"b\"\ntags = [\"{}\", \"{}\", \"{}\"]\nbuild_args = {{ GREETING = \"{greeting}\", OTHER = \"two\" }}\nlabels = {{ \"lifeos.test\" = \"{}\" }}\n",
            fx.tag("one"),
            fx.tag("two"),
            fx.tag("three").replace(":latest", ":v3"),
            fx.id
        )
    };
    fx.p.config(&config("hello"));
    let r = fx.p.json(&["build"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let id = |t: &str| docker(&["image", "inspect", "-f", "{{.Id}}", t]);
    let three = fx.tag("three").replace(":latest", ":v3");
    let first = id(&fx.tag("one"));
    assert_eq!(id(&fx.tag("two")), first);
    assert_eq!(id(&three), first);
    assert_eq!(fx.cli_run(&three, &["cat", "/greeting"]), "hello two");

    // A removed tag comes back without a build; a changed build arg rebuilds.
    docker(&["rmi", &fx.tag("two")]);
    let r = fx.p.json(&["build"]);
    assert_eq!(r.cached(), ["b"], "{}", r.all());
    assert_eq!(id(&fx.tag("two")), first);

    fx.p.config(&config("bonjour"));
    let r = fx.p.json(&["build"]);
    assert_eq!(r.ran(), ["b"], "{}", r.all());
    let change = &r.outcome("b")["reason"]["changes"][0];
    assert_eq!(change["field"], "build_args.GREETING", "{}", r.all());
    let second = id(&fx.tag("one"));
    assert_ne!(second, first);
    assert_eq!(id(&fx.tag("two")), second);
    assert_eq!(id(&three), second);
    assert_eq!(
        fx.cli_run(&fx.tag("two"), &["cat", "/greeting"]),
        "bonjour two"
    );
}

#[test]
fn buildkit_secret_mounts_get_the_task_secrets_and_keep_them_out_of_the_image() {
    let fx = DockerFx::new();
    let secret = format!("it-build-secret-{}", fx.id);
    fx.p.file(
        "s/Dockerfile",
        &format!(
            "FROM {}\nRUN --mount=type=secret,id=IT_BUILD_TOKEN sha256sum /run/secrets/IT_BUILD_TOKEN | cut -c1-64 > /token.sha\nRUN echo built > /built\n",
            fx.base()
        ),
    )
    .config(&format!(
        "[tasks.s]\nkind = \"image\"\ncontext = \"s\"\ntag = \"{}\"\nsecrets = [\"IT_BUILD_TOKEN\"]\nlabels = {{ \"lifeos.test\" = \"{}\" }}\n",
        fx.tag("s"),
        fx.id
    ));
    let r = fx.p.json_env(&["build"], &[("IT_BUILD_TOKEN", &secret)]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret));
    // The mount held the secret (its hash is in the image), and the secret itself is not.
    let o = std::process::Command::new("sh")
        .args(["-c", "printf %s \"$S\" | sha256sum | cut -c1-64"])
        .env("S", &secret)
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(want.len(), 64);
    assert_eq!(fx.cli_run(&fx.tag("s"), &["cat", "/token.sha"]), want);
    assert_eq!(
        fx.cli_run(
            &fx.tag("s"),
            &["sh", "-c", "ls /run/secrets 2>/dev/null | wc -l"]
        ),
        "0"
    );
    let saved = docker(&["save", &fx.tag("s")]);
    assert!(
        !saved.contains(&secret),
        "the secret is in the image's layers"
    );
    for (path, bytes) in crate::support::all_bytes(&fx.p.p(".lifeos")) {
        assert!(
            !crate::support::contains(&bytes, &secret),
            "secret in {}",
            path.display()
        );
    }

    // Cached with the same secret; a new value rebuilds (the key holds a hash of it).
    let r = fx.p.json_env(&["build"], &[("IT_BUILD_TOKEN", &secret)]);
    assert_eq!(r.cached(), ["s"], "{}", r.all());
    let r =
        fx.p.json_env(&["build"], &[("IT_BUILD_TOKEN", "another-value")]);
    assert_eq!(r.ran(), ["s"], "{}", r.all());
}
