//! The `tradeflow` binary: parses the command line ([`tradeflow::cli`], flags only) and
//! dispatches each command to its module.

use clap::Parser;
use std::process::ExitCode;
use tradeflow::cli::{Cli, Command};

// mimalloc keeps freed pages for reuse: the pipeline allocates and frees megabyte-sized
// chunk buffers continuously, which the system allocator hands back to the kernel and
// faults in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tradeflow::config::load_dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    tradeflow::logging::init(cli.log_format);
    exit_on_panic();
    let result = match cli.command {
        Command::Run(args) => {
            tradeflow::config::RunConfig::from_args(&args).map_err(anyhow::Error::from).and_then(tradeflow::run::run)
        }
        Command::Simulate(args) => tradeflow::simulate::simulate(&args),
        Command::Migrate(args) => tradeflow::run::migrate(&args),
        Command::Produce(args) => tradeflow::produce::produce(&args),
        Command::Check(args) => tradeflow::check::check(&args),
        Command::Report(args) => tradeflow::report::report(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tradeflow::say!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes a panic on any thread end the whole process at once, with the panic's message
/// and exit code 101. Timely's other workers would otherwise wait for ever for the
/// progress of the one that died, and a stop would wait for them.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tradeflow::logging::eprint_line("error: a thread panicked (above); the run is stopped, exit code 101");
        std::process::exit(101);
    }));
}
