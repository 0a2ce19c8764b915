//! A network namespace of the test's own, for tests that need several source
//! addresses (HELPERS.md: `ip netns add`, `ip link set lo up`; all of 127.0.0.0/8 is
//! then the test's). The test body runs on a tokio runtime whose threads all live in
//! the namespace, so the daemon started there binds its sockets inside it. Removed
//! when the body ends, even when it panics.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why no namespace could be made (not root, no `ip`): the test says so and skips.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: cannot create a network namespace".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` tool (iproute2) is missing".into()),
    }
}

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// Run `body` in a fresh network namespace with loopback up; `None` (after printing
/// why) when the machine cannot make one.
pub fn run<F, Fut>(name: &str, body: F) -> Option<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future + 'static,
    Fut::Output: Send + 'static,
{
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED {name}: {why}");
        return None;
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let ns = Namespace(format!(
        "hotline-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).expect("open netns");
    let host_ns = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
    let thread = std::thread::spawn(move || {
        // SAFETY: setns on a namespace file we hold open; it moves only this new
        // thread, and the runtime's threads are created from it, so they inherit it.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let ns = std::fs::read_link("/proc/thread-self/ns/net").expect("netns");
        assert_ne!(ns, host_ns, "still in the host's network namespace");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body())
    });
    let out = thread.join();
    drop(ns);
    match out {
        Ok(v) => Some(v),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
