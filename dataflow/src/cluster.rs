//! Connecting the processes of a multi-process run (`-n`, `-p`, `-h`).
//!
//! Every pair of processes shares one TCP connection, as in timely's own rendezvous:
//! process `p` dials each process below it and says who it is (its index, eight bytes
//! little-endian), and accepts one connection from each process above it. timely's
//! version polls its listener and sleeps a second whenever nothing has arrived, so every
//! multi-process run paid up to a second before its first trade. Here the listener looks
//! every 5 ms, a refused dial is retried after 20 ms, and whom a process still waits for
//! is logged every 10 s. A connection that does not name a process above this one
//! (within 10 s) is dropped with a warning instead of failing the run; a process that
//! connects again replaces its earlier connection, as in timely.
//!
//! The connected sockets go to timely's `initialize_networking_from_sockets`; what flows
//! over them is timely's business, as before.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};
use timely::worker::Worker;

/// How long a dialer waits between refused attempts.
const RETRY: Duration = Duration::from_millis(20);
/// How often a process says who it still waits for.
const REPORT: Duration = Duration::from_secs(10);
/// How long an accepted connection has to say which process it is.
const HELLO: Duration = Duration::from_secs(10);
/// How often the listener looks for a new connection.
const POLL: Duration = Duration::from_millis(5);

/// `timely::execute` for `config`, with this module's rendezvous for a cluster.
pub fn execute<T, F>(config: timely::Config, func: F) -> anyhow::Result<WorkerGuards<T>>
where
    T: Send + 'static,
    F: Fn(&mut Worker) -> T + Send + Sync + 'static,
{
    let timely::CommunicationConfig::Cluster { threads, process, addresses, zerocopy: false, .. } =
        config.communication
    else {
        return timely::execute(config, func).map_err(|e| anyhow::anyhow!("starting timely: {e}"));
    };
    let sockets = connect(&addresses, process)?;
    let hooks = Hooks::default();
    let allocators = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(allocators, sockets, process, threads, hooks)
        .map_err(|e| anyhow::anyhow!("starting timely's network threads: {e}"))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(builders, Box::new(guard), config.worker, func)
        .map_err(|e| anyhow::anyhow!("starting timely: {e}"))
}

/// One connected socket per other process of `addresses`, in order, `None` at `process`.
pub fn connect(addresses: &[String], process: usize) -> anyhow::Result<Vec<Option<TcpStream>>> {
    let address = &addresses[process];
    let listener = TcpListener::bind(address).map_err(|e| {
        anyhow::anyhow!(
            "process {process} cannot listen on {address} (its line of the -h file): {e}; \
             free that port or give this process another address"
        )
    })?;
    let above = addresses.len() - process - 1;
    let accepting = std::thread::Builder::new()
        .name("cluster-accept".into())
        .spawn(move || accept(listener, process, above))
        .map_err(|e| anyhow::anyhow!("process {process}: starting the thread that accepts connections: {e}"))?;
    let mut sockets: Vec<Option<TcpStream>> = Vec::with_capacity(addresses.len());
    for (index, address) in addresses[..process].iter().enumerate() {
        sockets.push(Some(dial(address, index, process)?));
    }
    sockets.push(None);
    let accepted = accepting.join().map_err(|_| anyhow::anyhow!("accepting connections panicked"))??;
    sockets.extend(accepted.into_iter().map(Some));
    Ok(sockets)
}

/// Dials process `index` at `address` until it answers, then says this is `process`.
fn dial(address: &str, index: usize, process: usize) -> anyhow::Result<TcpStream> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        match TcpStream::connect(address) {
            Ok(mut stream) => {
                stream.set_nodelay(true).map_err(|e| {
                    anyhow::anyhow!("process {process}: the connection to process {index} at {address}: {e}")
                })?;
                stream
                    .write_all(&(process as u64).to_le_bytes())
                    .map_err(|e| anyhow::anyhow!("process {process}: greeting process {index} at {address}: {e}"))?;
                return Ok(stream);
            }
            Err(e) => {
                if reported.elapsed() >= REPORT {
                    reported = Instant::now();
                    tracing::warn!(
                        "process {process}: still waiting for process {index} at {address} after {:.0}s ({e}); \
                         is it started, with the same -h file?",
                        started.elapsed().as_secs_f64()
                    );
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// Accepts one connection from each of the `above` processes above `process`, in order.
/// A process that connects again replaces its earlier connection (it was restarted).
fn accept(listener: TcpListener, process: usize, above: usize) -> anyhow::Result<Vec<TcpStream>> {
    // Polled, so that this process can say whom it still waits for.
    listener.set_nonblocking(true)?;
    let mut accepted: Vec<Option<TcpStream>> = (0..above).map(|_| None).collect();
    let started = Instant::now();
    let mut reported = started;
    while accepted.iter().any(Option::is_none) {
        let (stream, peer) = match listener.accept() {
            Ok(connection) => connection,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if reported.elapsed() >= REPORT {
                    reported = Instant::now();
                    let missing: Vec<String> =
                        (0..above).filter(|i| accepted[*i].is_none()).map(|i| (process + 1 + i).to_string()).collect();
                    tracing::warn!(
                        "process {process}: still waiting after {:.0}s for process(es) {} to connect; \
                         are they started, with the same -h file?",
                        started.elapsed().as_secs_f64(),
                        missing.join(", ")
                    );
                }
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => return Err(anyhow::anyhow!("process {process}: accepting connections: {e}")),
        };
        match hello(stream) {
            Ok((index, stream)) => match index.checked_sub(process + 1).and_then(|i| accepted.get_mut(i)) {
                Some(slot) => *slot = Some(stream),
                None => tracing::warn!(
                    "process {process}: dropped a connection from {peer} that says it is process {index}, \
                     which is not a process above this one"
                ),
            },
            Err(e) => tracing::warn!("process {process}: dropped a connection from {peer}: {e}"),
        }
    }
    Ok(accepted.into_iter().flatten().collect())
}

/// The process index an accepted connection says it is, within [`HELLO`], and the
/// connection ready for timely (blocking, no timeout, no delay).
fn hello(mut stream: TcpStream) -> std::io::Result<(usize, TcpStream)> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HELLO))?;
    let mut hello = [0u8; 8];
    stream.read_exact(&mut hello).map_err(|e| {
        std::io::Error::new(e.kind(), format!("it did not say which process it is within {HELLO:?}: {e}"))
    })?;
    stream.set_read_timeout(None)?;
    stream.set_nodelay(true)?;
    Ok((u64::from_le_bytes(hello) as usize, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<_> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
        listeners.iter().map(|l| l.local_addr().expect("address").to_string()).collect()
    }

    /// Three processes, started in any order, end up with one socket to each other
    /// process, each socket's other end being the process it stands for.
    #[test]
    fn three_processes_connect_pairwise() {
        let addresses = free_addresses(3);
        let handles: Vec<_> = [2, 0, 1]
            .into_iter()
            .map(|process| {
                let addresses = addresses.clone();
                std::thread::spawn(move || (process, connect(&addresses, process).expect("connect")))
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        all.sort_by_key(|(process, _)| *process);
        // Each process writes its index to every socket; each reads who is on the other end.
        for (process, sockets) in &mut all {
            assert!(sockets[*process].is_none());
            for socket in sockets.iter_mut().flatten() {
                socket.write_all(&[*process as u8]).expect("write");
            }
        }
        for (process, sockets) in &mut all {
            for (index, socket) in sockets.iter_mut().enumerate() {
                let Some(socket) = socket else { continue };
                let mut byte = [0u8];
                socket.read_exact(&mut byte).expect("read");
                assert_eq!(byte[0] as usize, index, "process {process}'s socket {index}");
            }
        }
    }

    /// A stranger's connection (a port scanner, a health check) is dropped, not taken
    /// for a process.
    #[test]
    fn a_connection_that_does_not_name_a_process_is_dropped() {
        let addresses = free_addresses(2);
        let listening = {
            let addresses = addresses.clone();
            std::thread::spawn(move || connect(&addresses, 0).expect("connect"))
        };
        let stranger = loop {
            match TcpStream::connect(&addresses[0]) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(RETRY),
            }
        };
        (&stranger).write_all(&7u64.to_le_bytes()).expect("write");
        let mut process_one = connect(&addresses, 1).expect("connect");
        let mut process_zero = listening.join().expect("thread");
        process_one[0].as_mut().expect("socket").write_all(b"1").expect("write");
        let mut byte = [0u8];
        process_zero[1].as_mut().expect("socket").read_exact(&mut byte).expect("read");
        assert_eq!(&byte, b"1");
    }
}
