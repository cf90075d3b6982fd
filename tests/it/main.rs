//! Integration tests of the real `lifeos` binary on temp-dir projects. One test binary;
//! `support` is the fixture builder. Docker tests talk to a real engine and fail when none
//! answers.

mod support;

mod backup;
mod binary;
mod cache_cmd;
mod cache_safety;
mod cloudrun;
mod config_errors;
mod config_props;
mod config_validation;
mod deploy;
mod docker_parity;
mod engine_view;
mod events_schema;
mod exec;
mod hashing;
mod house;
mod image_inputs;
mod images;
mod kinds;
mod pipeline;
mod plan_explain;
mod postgres;
mod registry;
mod remote_cache;
mod runs;
mod secrets;
mod service_cli;
mod services;
mod ssh;
mod summary;
mod url_inputs;
mod watch;
