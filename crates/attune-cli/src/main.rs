//! The `attune` binary: a thin layer of argument handling and progress display over the
//! library crates. It is the only crate that uses `anyhow`.
mod cli;
mod commands;
mod progress;

use clap::Parser;

/// Every forward pass allocates and frees tensors of megabytes; glibc returns those to the OS
/// (mmap/munmap), so each one costs page faults and page clearing — 19 % of a training step in
/// `perf`. mimalloc keeps the pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = commands::run(cli.command) {
        // One line, with the chain of causes, never a panic trace.
        let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
