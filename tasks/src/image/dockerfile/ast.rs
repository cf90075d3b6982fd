//! The syntax tree: what the plan needs of a Dockerfile, and nothing more.

#[derive(Debug, thiserror::Error)]
#[error("Dockerfile line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub stages: Vec<Stage>,
    /// `ARG`s before the first `FROM`: the only variables `FROM` can use.
    pub global_args: Vec<ArgDecl>,
    /// The escape / line-continuation character (`# escape=` directive).
    pub escape: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// Unexpanded default value.
    pub default: Option<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// Lowercased `AS` name.
    pub name: Option<String>,
    /// Line of the `FROM`.
    pub line: usize,
    /// The `FROM` image or stage reference, before ARG substitution.
    pub base: String,
    pub platform: Option<String>,
    pub copies: Vec<CopyInstr>,
    pub mounts: Vec<MountInstr>,
    /// The stage's own `ARG`s and `ENV`s, in order (ONBUILD ones left out).
    pub vars: Vec<VarDecl>,
    /// The stage's own `WORKDIR`s (line, unexpanded path), in order.
    pub workdirs: Vec<(usize, String)>,
    /// Has a `RUN` of its own (not an ONBUILD trigger).
    pub runs: bool,
    /// Has an `ONBUILD` trigger (of any instruction): it runs in the stages built from this one.
    pub onbuild: bool,
}

/// An `ARG` or `ENV` inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarDecl {
    Arg(ArgDecl),
    Env {
        line: usize,
        name: String,
        /// Unexpanded.
        value: String,
    },
}

/// A `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    pub line: usize,
    pub add: bool,
    /// `--from` as written.
    pub from: Option<String>,
    /// Source paths with quotes and escapes processed; heredoc sources are left out (they are
    /// inline content, not paths).
    pub sources: Vec<String>,
    /// The destination as written (JSON form: unquoted already).
    pub dest: String,
    /// JSON form (`COPY ["a", "b"]`).
    pub json: bool,
    /// `--parents` or `--exclude`: which files land where is not plain `COPY` semantics.
    pub reshapes: bool,
    /// Inside `ONBUILD`: runs in the stages built `FROM` this one, not in this one.
    pub onbuild: bool,
}

/// One `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInstr {
    pub line: usize,
    /// Lowercased; `bind` when not given.
    pub mount_type: String,
    pub from: Option<String>,
    pub source: Option<String>,
    pub onbuild: bool,
}

/// One parsed instruction.
#[derive(Debug)]
pub(super) enum Instr {
    From {
        base: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Arg(Vec<ArgDecl>),
    /// `ENV` pairs, values unexpanded.
    Env(Vec<(String, String)>),
    Copy(CopyInstr),
    Run(Vec<MountInstr>),
    /// `WORKDIR`, unexpanded.
    Workdir(String),
    Onbuild(Box<Instr>),
    Other,
}

impl Dockerfile {
    /// Append one instruction: a `FROM` opens a stage, the rest go to the last one.
    pub(super) fn add(&mut self, instr: Instr, line: usize) -> Result<(), ParseError> {
        if let Instr::From {
            base,
            name,
            platform,
        } = instr
        {
            self.stages.push(Stage {
                index: self.stages.len(),
                name,
                line,
                base,
                platform,
                copies: Vec::new(),
                mounts: Vec::new(),
                vars: Vec::new(),
                workdirs: Vec::new(),
                runs: false,
                onbuild: false,
            });
            return Ok(());
        }
        let Some(stage) = self.stages.last_mut() else {
            return match instr {
                Instr::Arg(decls) => {
                    self.global_args.extend(decls);
                    Ok(())
                }
                _ => Err(ParseError {
                    line,
                    message: "no build stage in current context".into(),
                }),
            };
        };
        let (instr, onbuild) = match instr {
            Instr::Onbuild(inner) => (*inner, true),
            other => (other, false),
        };
        stage.onbuild |= onbuild;
        match instr {
            Instr::Copy(mut copy) => {
                copy.onbuild = onbuild;
                stage.copies.push(copy);
            }
            Instr::Run(mounts) => {
                stage.runs |= !onbuild;
                stage
                    .mounts
                    .extend(mounts.into_iter().map(|m| MountInstr { onbuild, ..m }));
            }
            Instr::Workdir(path) if !onbuild => stage.workdirs.push((line, path)),
            Instr::Arg(decls) if !onbuild => stage.vars.extend(decls.into_iter().map(VarDecl::Arg)),
            Instr::Env(pairs) if !onbuild => {
                stage
                    .vars
                    .extend(pairs.into_iter().map(|(name, value)| VarDecl::Env {
                        line,
                        name,
                        value,
                    }))
            }
            _ => {}
        }
        Ok(())
    }
}
