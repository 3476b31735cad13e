//! Local stand-ins for the services the Lambdas talk to, so tests run real binaries offline.

pub mod gitlab;
pub mod iam;
pub mod logs;
pub mod moto;
pub mod response_sink;
pub mod runtime_api;
