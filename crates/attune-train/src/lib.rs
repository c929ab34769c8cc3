//! attune-train: fine-tuning BERT-family classifiers — datasets, length-bucketed batching,
//! AdamW with warmup/decay schedules, evaluation metrics and self-describing run directories.
#![deny(missing_docs)]

pub mod bench;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod prune;
pub mod trainer;
