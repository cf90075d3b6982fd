//! Image plans as precise as BuildKit's own variables allow (issue #18 point 9): with the
//! task's `platform` given, `TARGETARCH` and friends are known, so a `COPY dist/$TARGETARCH/`
//! keys only that architecture's files, and the engine builds exactly those.

use crate::support::*;

fn plan_outcome(p: &Project, task: &str) -> String {
    let r = p.run(&["plan", "--json"]);
    let rows: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}", r.all()));
    rows.as_array()
        .unwrap()
        .iter()
        .find(|row| row["task"] == task)
        .unwrap_or_else(|| panic!("no row for {task}: {rows}"))["outcome"]["outcome"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn buildkit_target_arch_from_the_platform_keys_only_that_arch() {
    let fx = DockerFx::new();
    let p = &fx.p;
    p.file("k/dist/arm64/app", "built for arm64")
        .file("k/dist/amd64/app", "built for amd64")
        .file(
            "k/Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY dist/$TARGETARCH/app /app\n",
        )
        .config(&format!(
            "[tasks.img]\nkind = \"image\"\ncontext = \"k\"\ndockerfile = \"k/Dockerfile\"\n\
             tag = \"{}\"\nbuilder = \"buildkit\"\nplatform = \"linux/arm64\"\n\
             labels = {{ \"lifeos.test\" = \"{}\" }}\n",
            fx.tag("img"),
            fx.id
        ));
    let r = p.json(&["build"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // The engine agrees on what $TARGETARCH is: the image holds arm64's file.
    let label = format!("lifeos.test={}", fx.id);
    let cid = docker(&["create", "--label", &label, &fx.tag("img"), "/app"]);
    let tar = docker(&["cp", &format!("{cid}:/app"), "-"]);
    docker(&["rm", &cid]);
    assert!(tar.contains("built for arm64"), "{tar}");

    // Another architecture's file is not in the key (it once made the key the whole context).
    p.file("k/dist/amd64/app", "changed");
    assert_eq!(plan_outcome(p, "img"), "cached");
    // This one's is.
    p.file("k/dist/arm64/app", "changed");
    assert_eq!(plan_outcome(p, "img"), "would_run");
}
