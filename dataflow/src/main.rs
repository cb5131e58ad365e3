//! The `tradeflow` binary.

// mimalloc keeps freed pages for reuse: the pipeline allocates and frees megabyte-sized
// chunk buffers continuously, which the system allocator hands back to the kernel and
// faults in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tradeflow::cli::main()
}
