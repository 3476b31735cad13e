//! The Lambdas' log output, configured as Lambda's advanced logging controls ask.
//!
//! In place of `lambda_runtime::tracing::init_default_subscriber`, whose `EnvFilter` links a
//! regex engine into both binaries for per-module directives these Lambdas never need.

use tracing_subscriber::filter::LevelFilter;

/// Logs to standard output at the level of `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, else INFO),
/// as JSON when `AWS_LAMBDA_LOG_FORMAT` is `JSON`. A level is one word (`warn`); anything else,
/// such as a `RUST_LOG` with per-module directives, falls back to INFO. Release builds compile
/// DEBUG and TRACE events out (tracing's `release_max_level_info`, workspace `Cargo.toml`), so
/// those two levels log what INFO does.
pub fn init() {
    let variable = |name: &str| std::env::var(name).ok();
    let level = variable("AWS_LAMBDA_LOG_LEVEL").or_else(|| variable("RUST_LOG"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level_from(level.as_deref()))
        .with_writer(std::io::stdout);
    if variable("AWS_LAMBDA_LOG_FORMAT").is_some_and(|format| format.eq_ignore_ascii_case("json")) {
        builder.json().init()
    } else {
        builder.init()
    }
}

fn level_from(setting: Option<&str>) -> LevelFilter {
    setting.and_then(|level| level.trim().parse().ok()).unwrap_or(LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_log_level_names_parse_and_anything_else_is_info() {
        // Lambda's advanced logging controls name levels in upper case.
        assert_eq!(level_from(Some("DEBUG")), LevelFilter::DEBUG);
        assert_eq!(level_from(Some("warn")), LevelFilter::WARN);
        assert_eq!(level_from(Some("info,aws_smithy_runtime=debug")), LevelFilter::INFO);
        assert_eq!(level_from(None), LevelFilter::INFO);
    }
}
