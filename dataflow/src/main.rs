//! The `tradeflow` binary.

fn main() -> std::process::ExitCode {
    tradeflow::cli::main()
}
