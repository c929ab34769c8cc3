//! One error type for the crate; every variant names the file or field at fault so the CLI can
//! print a one-line message without guessing.
use std::path::PathBuf;

/// Errors raised while loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file did not parse or lacked a field.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A model directory lacks the weights or tokenizer we need.
    #[error("{path}: {message}")]
    ModelDir {
        /// The directory concerned.
        path: PathBuf,
        /// What is missing and how to fix it.
        message: String,
    },
    /// The configuration describes a model this encoder cannot run.
    #[error("{path}: unsupported config: {message}")]
    UnsupportedConfig {
        /// The `config.json` concerned.
        path: PathBuf,
        /// Which field and why.
        message: String,
    },
    /// A weights file is corrupt or does not fit the configuration.
    #[error("{path}: {message}")]
    Weights {
        /// The weights file concerned.
        path: PathBuf,
        /// Which tensor and why.
        message: String,
    },
    /// The tokenizer failed to load or encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A caller passed arguments that do not fit together.
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
