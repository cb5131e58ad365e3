//! A real headless browser for the tests: Debian's Chromium (`/usr/bin/chromium`, or
//! `CHROMIUM`), driven by `playwright-core` from npm (installed by `npm ci` in
//! `tests/js`, never downloading a browser of its own) through the Node scripts in
//! `tests/js`. Each script starts Chromium headless with a fresh `--user-data-dir` and
//! the flags this machine needs (`--no-sandbox --disable-gpu --no-first-run
//! --disable-background-networking --disable-component-update --disable-sync
//! --disable-quic`).
//!
//! Without Node, the npm packages or Chromium the tests skip with a printed reason,
//! unless `TRADEFLOW_REQUIRE_BROWSER=1` (as `.ci/run` sets), when they fail.

use crate::process::{Finished, Running, on_path};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What a browser test needs.
pub struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    scripts: PathBuf,
}

fn find() -> Result<Browser, String> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let node = on_path("node").ok_or("no `node` on the PATH")?;
    if !scripts.join("node_modules/playwright-core/package.json").is_file() {
        return Err(format!("playwright-core is not installed: run `npm ci` in {}", scripts.display()));
    }
    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return Err(format!("no Chromium at {}; install Debian's chromium package", chromium.display()));
    }
    Ok(Browser { node, chromium, scripts })
}

impl Browser {
    /// The browser, or `None` (the test skips, saying why) unless
    /// `TRADEFLOW_REQUIRE_BROWSER=1`.
    pub fn find() -> Option<Browser> {
        match find() {
            Ok(browser) => Some(browser),
            Err(reason) if std::env::var("TRADEFLOW_REQUIRE_BROWSER").as_deref() == Ok("1") => {
                panic!("TRADEFLOW_REQUIRE_BROWSER=1 but {reason}")
            }
            Err(reason) => {
                eprintln!("skipped: {reason}");
                None
            }
        }
    }

    /// Runs `tests/js/<script>` with `args`, failing the test after `timeout`.
    pub fn run(&self, script: &str, args: &[&str], timeout: Duration) -> Finished {
        let mut command = Command::new(&self.node);
        command.current_dir(&self.scripts).arg(script).args(args).env("CHROMIUM", &self.chromium);
        Running::spawn(command).finish(timeout)
    }
}
