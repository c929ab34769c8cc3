//! attune-explain: where a model looks, as pure functions over what the encoder returns.
//!
//! Everything here works on plain matrices of attention probabilities and on per-token scores,
//! so it can be tested on hand-worked examples and reused by the CLI and the server alike.
#![deny(missing_docs)]

pub mod alignment;
pub mod attention;
pub mod explainer;
pub mod human;
pub mod metrics;
pub mod parity;
pub mod render;
pub mod words;

/// Inputs that do not fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExplainError {
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {what} has {got} entries, expected {expected}")]
    LengthMismatch {
        /// Which input is off.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A layer, head or row index is out of range.
    #[error("{what} {index} is out of range (there are {count})")]
    OutOfRange {
        /// What was indexed.
        what: &'static str,
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// There is nothing to explain (no layers, no tokens).
    #[error("empty input: {0}")]
    Empty(&'static str),
    /// A human-attention file or a request is malformed.
    #[error("{location}: {message}")]
    Input {
        /// File and line, or the request field.
        location: String,
        /// What is wrong.
        message: String,
    },
}
