//! Just enough Dockerfile parsing (BuildKit's parser rules) to know, for one build target,
//! which stages it reaches, which external images it depends on and which context files it can
//! read, so an image's cache key only covers the files its own stages read.
//!
//! Layers, each using only the ones listed before it:
//! - [`ast`]: the syntax tree (stages, their `COPY`/`ADD`, `RUN --mount`, `ARG`/`ENV`);
//! - `lexer`: the one tokenizer (words, flags, heredoc markers, JSON-form arrays);
//! - `expand`: `$VAR` / `${VAR:-x}` word expansion;
//! - `checks` and `instruction`: one logical line into one instruction;
//! - `parser`: the file into logical lines (directives, continuations, heredoc bodies);
//! - `options`, `context_use`, `stage_vars`, `plan` and `narrow`: what one build target reads.

mod ast;
mod checks;
mod context_use;
mod expand;
mod instruction;
mod lexer;
mod narrow;
mod options;
mod parser;
mod plan;
mod stage_vars;
#[cfg(test)]
mod tests;

pub use ast::{ArgDecl, CopyInstr, Dockerfile, MountInstr, ParseError, Stage, VarDecl};
pub use context_use::ContextUse;
pub use narrow::NarrowNeeds;
pub use options::{KnownPlatform, PlanError, PlanOptions};
pub use parser::parse;
pub use plan::TargetPlan;
