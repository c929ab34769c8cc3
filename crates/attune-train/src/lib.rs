//! attune-train: fine-tuning BERT-family classifiers — datasets, length-bucketed batching,
//! AdamW with warmup/decay schedules, evaluation metrics and self-describing run directories.
#![deny(missing_docs)]

pub mod data;
