// Ingest allocates and frees many small strings (label names and values) on one thread and
// drops them on another; glibc's allocator spent a fifth of the collector's CPU on that
// (malloc consolidation, see docs/BENCHMARKS.md), mimalloc a few percent.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tocsin_collector::cli::main()
}
