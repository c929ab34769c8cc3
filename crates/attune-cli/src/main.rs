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

/// mimalloc option ids (`mi_option_e` in mimalloc.h, the same in its v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: i32 = 4;
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// By default mimalloc still hands freed pages back after 10 ms, and the kernel zeroes them
/// again on the next touch (`clear_page_erms`, 10 % of a training step). Keeping them measured
/// 5–15 % more sentences/s in `attune bench`; the cost is a resident set that stays at its peak.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table; every value is
    // valid for these two options, and it is called before any worker thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 1);
    }
}

fn main() {
    keep_freed_memory();
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
