//! What a plan is asked (target, how the builder resolves variables) and how it fails: the
//! types `stage_vars` and `plan` share.

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("target stage \"{target}\" could not be found (stages: {})", name_list(.stages))]
    UnknownTarget { target: String, stages: Vec<String> },
    #[error("Dockerfile line {line}: invalid stage index {index}")]
    InvalidStageIndex { line: usize, index: String },
    #[error(
        "Dockerfile line {line}: stage \"{reference}\" must be defined before the stage using it"
    )]
    LaterStage { line: usize, reference: String },
    #[error("Dockerfile line {line}: base name ({base}) should not be blank")]
    EmptyBase { line: usize, base: String },
    #[error("Dockerfile line {line}: {message}")]
    Expansion { line: usize, message: String },
}

fn name_list(stages: &[String]) -> String {
    if stages.is_empty() {
        "none named".into()
    } else {
        stages.join(", ")
    }
}

/// How the builder resolves `$VAR` in a stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// BuildKit: an `ARG` sets the variable over the base image's `ENV` of the same name
    /// (the classic builder lets the image's `ENV` win, which lifeos cannot see).
    pub arg_beats_image_env: bool,
    /// BuildKit with the task's `platform` given: the values of its `TARGET*` ARGs. None:
    /// they are unknown to the plan (the engine's own platform, or the classic builder).
    pub target_platform: Option<KnownPlatform>,
}

/// A target platform whose BuildKit `TARGET*` ARGs are certain: `os/arch`, lowercase, with an
/// architecture that has no variants. Others (`arm`, `arm64/v8`, upper case) go through
/// BuildKit's normalisation first, which the plan does not redo: they stay unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPlatform {
    os: &'static str,
    arch: &'static str,
}

impl KnownPlatform {
    pub fn parse(platform: &str) -> Option<Self> {
        const OS: [&str; 2] = ["linux", "windows"];
        const ARCH: [&str; 6] = ["amd64", "arm64", "386", "ppc64le", "s390x", "riscv64"];
        let (os, arch) = platform.split_once('/')?;
        Some(Self {
            os: OS.into_iter().find(|o| *o == os)?,
            arch: ARCH.into_iter().find(|a| *a == arch)?,
        })
    }

    /// The value BuildKit gives the platform ARG `name`; None for the `BUILD*` ones (the
    /// engine's own platform).
    pub(super) fn arg(&self, name: &str) -> Option<String> {
        match name {
            "TARGETPLATFORM" => Some(format!("{}/{}", self.os, self.arch)),
            "TARGETOS" => Some(self.os.to_string()),
            "TARGETARCH" => Some(self.arch.to_string()),
            "TARGETVARIANT" => Some(String::new()),
            _ => None,
        }
    }
}

/// What a stage's `FROM` or a `--from` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ref {
    Stage(usize),
    Image(String),
    Scratch,
}
