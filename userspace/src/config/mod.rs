//! The configuration file: serde model, validation, and errors that name the
//! file, the line and the reason.
//!
//! Loaded by `main` at start (and by the management thread on reload); the
//! rest of the program only ever sees a validated [`Config`]. Unknown keys are
//! errors, not warnings: a typo must not silently fall back to a default.

pub mod app;
pub mod cidr;
pub mod server;
pub mod xdp;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use app::AppSettings;
pub use cidr::Cidr;
pub use server::{LimitSettings, ServerSettings, TlsSettings};
pub use xdp::{XdpMode, XdpSettings};

/// The whole file. Each section has its own defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub apps: Vec<AppSettings>,
    #[serde(default)]
    pub xdp: XdpSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(path, &text)
    }

    /// Parse and validate `text`; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((0, 0));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        config
            .xdp
            .validate()
            .map_err(|message| ConfigError::Semantic {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(config)
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.xdp.service_ports, vec![80, 443]);
        assert_eq!(c.xdp.mode, XdpMode::Auto);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[xdp]\nservice_ports = [80]\nsyn_rat = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:3:1: "), "{err}");
        assert!(err.contains("syn_rat"), "{err}");
    }

    #[test]
    fn bad_cidr_names_its_line() {
        let err = parse("[xdp]\nblocklist = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/40\",\n]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
        assert!(err.contains("prefix length 40"), "{err}");
    }

    #[test]
    fn semantic_errors_are_refused() {
        let err = parse("[xdp]\nephemeral_ports = [60000, 1000]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ephemeral_ports"), "{err}");
    }
}
