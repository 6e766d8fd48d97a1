//! The exporter (`badfd serve`) as a process, and requests to it: the one
//! `Serve` of the tests and the benchmarks.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use badfd::AttachPreference;

use crate::{binaries::badfd_path, kernel::test_attach_mode, scrape::Scrape};

/// A port nothing listens on now, on `host` (`127.0.0.1`, `::1`).
pub fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port()
}

/// A running `badfd serve`; terminated on drop (SIGTERM, then SIGKILL after 10 s).
pub struct Serve {
    pub child: Child,
    pub address: SocketAddr,
}

impl Serve {
    /// Starts `badfd serve` with `args` on a free 127.0.0.1 port, as tests run
    /// it (see [`Serve::command`]), and waits until `/-/ready` says the
    /// programs are attached; panics (with its log) if it never does.
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_at(([127, 0, 0, 1], free_port("127.0.0.1")).into(), args)
    }

    /// As `start`, listening on `address`.
    pub fn start_at(address: SocketAddr, args: &[&str]) -> Serve {
        Serve::launch(Serve::command(address, args), address, Serve::is_ready)
    }

    /// `badfd serve` listening on `address` with `args`, as tests run it: in
    /// the attach mode of `BADFD_TEST_ATTACH`, and with a roomy ring buffer
    /// (unless `args` gives one) so that other processes on the host
    /// (benchmarks, floods) cannot crowd a test's events out.
    pub fn command(address: SocketAddr, args: &[&str]) -> Command {
        Serve::command_listening(&[&address.to_string()], args)
    }

    /// As `command`, with a `--web.listen-address` for each of `listen`
    /// (`:PORT`, `HOST:PORT`).
    pub fn command_listening(listen: &[&str], args: &[&str]) -> Command {
        let attach = match test_attach_mode() {
            AttachPreference::Auto => "auto",
            AttachPreference::Fentry => "fentry",
            AttachPreference::Tracepoint => "tracepoint",
        };
        let ringbuf: &[&str] = if args.contains(&"--ringbuf-bytes") { &[] } else { &["--ringbuf-bytes", "67108864"] };
        let mut command = Command::new(badfd_path());
        command.arg("serve");
        for address in listen {
            command.args(["--web.listen-address", address]);
        }
        command.args(["--attach", attach]).args(ringbuf).args(args);
        command
    }

    /// `badfd serve` listening on `address` with `args` and nothing else: with
    /// badfd's own defaults, as the benchmarks measure it.
    pub fn plain_command(address: SocketAddr, args: &[&str]) -> Command {
        let mut command = Command::new(badfd_path());
        command.args(["serve", "--web.listen-address", &address.to_string()]).args(args);
        command
    }

    /// Starts `command` (a `badfd serve`, or something that execs one, with
    /// exactly its own arguments) that listens on `address`, with its stderr
    /// in [`Serve::log_path`], and waits until `ready` holds (30 s at most);
    /// panics with the log if it exits or never gets ready.
    pub fn launch(mut command: Command, address: SocketAddr, ready: impl Fn(&Serve) -> bool) -> Serve {
        let log = log_path(address);
        let child = command.stderr(std::fs::File::create(&log).unwrap()).spawn().expect("start badfd serve");
        let mut serve = Serve { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready(&serve) {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("badfd serve exited with {status}: {}", serve.log());
            }
            assert!(Instant::now() < deadline, "badfd serve not ready in 30 s: {}", serve.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/-/ready` answers 200: the programs are attached.
    pub fn is_ready(&self) -> bool {
        matches!(self.try_get("/-/ready", None), Ok((200, _)))
    }

    /// GET `path`; (status, body).
    pub fn try_get(&self, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&self.address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\n{accept}Connection: close\r\n\r\n", self.address)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8(response).map_err(|e| std::io::Error::other(e.to_string()))?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("no status"))?;
        assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "this client reads whole bodies only");
        Ok((status, body.to_string()))
    }

    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        self.try_get(path, accept).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `/metrics` in the OpenMetrics format, parsed.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        Scrape::parse(&body)
    }

    /// Scrapes until at least `min` anomalies have arrived, each has its OTLP
    /// outcome and the queue is empty, and checks that it stays so half a
    /// second later (nothing more arrives, nothing is counted twice); the
    /// scrape and the number of anomalies. `each` runs on every scrape (a
    /// test's own checks, such as readiness).
    pub fn until_otlp_accounted(&self, min: u64, timeout: Duration, each: impl Fn(&Serve, &Scrape)) -> (Scrape, f64) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.scrape();
            each(self, &s);
            let received = s.anomalies_received();
            if received >= min as f64 && s.otlp_anomalies_accounted() == received && s.one("badfd_otlp_queue_records", &[]) == 0.0 {
                std::thread::sleep(Duration::from_millis(500));
                let again = self.scrape();
                assert_eq!(again.anomalies_received(), received);
                assert_eq!(again.otlp_anomalies_accounted(), received);
                return (again, received);
            }
            assert!(
                Instant::now() < deadline,
                "not all of at least {min} anomalies accounted for in {timeout:?}: received {received}, accounted {}; log: {}",
                s.otlp_anomalies_accounted(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `signal` (e.g. libc::SIGHUP) to the exporter.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file the exporter's stderr goes to.
    pub fn log_path(&self) -> PathBuf {
        log_path(self.address)
    }

    /// The exporter's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// One log file per test process and port.
fn log_path(address: SocketAddr) -> PathBuf {
    std::env::temp_dir().join(format!("badfd-serve-{}-{}.log", std::process::id(), address.port()))
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // a test stopped it already
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
