//! Where log lines go, without ever making a shard wait for them.
//!
//! Every line goes through a bounded queue to one writer thread (`tracing-appender`'s
//! non-blocking writer): a shard only queues its line. When the destination does not take lines
//! (a stderr pipe nobody reads, a stuck log shipper, a paused terminal) the queue fills and
//! further lines are dropped and counted, never waited for; once lines get through again the
//! count is logged, and it is in `$SYS/broker/log/dropped`.
//!
//! Destinations: stderr (default), a file (`--log-file`, reopened on SIGHUP so that logrotate
//! can move it), or syslog (`--log-dest syslog`: journald reads it too). `--log-format json`
//! writes one JSON object a line for log shippers.

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::Level;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Lines queued for the writer at most; past that they are dropped (and counted).
const QUEUED_LINES: usize = 4096;
/// How often the count of dropped lines is looked at, and logged if it grew.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    Stderr,
    /// Appended to; reopened on SIGHUP.
    File(PathBuf),
    Syslog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// The logging set up by [`init`]: keep it for the life of the process (dropping it flushes
/// the lines still queued).
pub struct Logging {
    _guard: WorkerGuard,
}

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
static REOPEN: OnceLock<reopen::Handle> = OnceLock::new();

/// Log lines dropped so far because the destination did not take them.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Reopens the log file (SIGHUP), if logging goes to one: after logrotate moved it, lines go
/// to a new file at the configured path.
pub fn reopen() {
    if let Some(handle) = REOPEN.get() {
        handle.reopen();
    }
}

/// Installs the global subscriber: `filter` (an `EnvFilter` directive) to `dest`, in `format`.
pub fn init(filter: &str, dest: &LogDest, format: LogFormat) -> std::io::Result<Logging> {
    let builder = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("ringmq-log");
    let (writer, guard) = match dest {
        LogDest::Stderr => builder.finish(std::io::stderr()),
        LogDest::File(path) => {
            let file = open_reopenable(path)?;
            let _ = REOPEN.set(file.handle());
            builder.finish(file)
        }
        LogDest::Syslog => builder.finish(Syslog::open()),
    };
    let _ = DROPPED.set(writer.error_counter());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let ansi = *dest == LogDest::Stderr
        && format == LogFormat::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match (dest, format) {
        (LogDest::Syslog, LogFormat::Text) => {
            fmt.without_time().with_writer(Prioritized(writer)).init()
        }
        (LogDest::Syslog, LogFormat::Json) => fmt.json().with_writer(Prioritized(writer)).init(),
        (_, LogFormat::Text) => fmt.with_writer(writer).init(),
        (_, LogFormat::Json) => fmt.json().with_writer(writer).init(),
    }
    std::thread::Builder::new()
        .name("ringmq-log-drops".into())
        .spawn(report_drops)?;
    Ok(Logging { _guard: guard })
}

fn open_reopenable(path: &Path) -> std::io::Result<reopen::Reopen<std::fs::File>> {
    let path = path.to_path_buf();
    reopen::Reopen::new(Box::new(move || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    }))
}

/// Logs how many lines were dropped since the last report, once lines get through again:
/// the report itself is queued like any line (and dropped too while the queue is full).
fn report_drops() {
    let mut reported = 0;
    loop {
        std::thread::sleep(DROP_REPORT_EVERY);
        let dropped = dropped_lines();
        if dropped > reported {
            tracing::warn!(
                dropped = dropped - reported,
                dropped_total = dropped,
                "log lines dropped: their destination did not take them in time"
            );
            reported = dropped;
        }
    }
}

/// The non-blocking writer, each line prefixed with its syslog priority (`<N>`), for
/// [`Syslog`] at the other end of the queue. A line is one write, so that the prefix and the
/// line stay together.
struct Prioritized(NonBlocking);

impl<'a> MakeWriter<'a> for Prioritized {
    type Writer = PrioritizedLine;

    fn make_writer(&'a self) -> PrioritizedLine {
        self.line(libc::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> PrioritizedLine {
        self.line(match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
        })
    }
}

impl Prioritized {
    fn line(&self, priority: libc::c_int) -> PrioritizedLine {
        PrioritizedLine {
            out: self.0.clone(),
            line: format!("<{priority}>").into_bytes(),
        }
    }
}

/// One line on its way, sent whole when the formatter is done with it.
struct PrioritizedLine {
    out: NonBlocking,
    line: Vec<u8>,
}

impl Write for PrioritizedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PrioritizedLine {
    fn drop(&mut self) {
        let _ = self.out.write_all(&self.line);
    }
}

/// The system logger, on the writer thread: `<N>line` becomes `syslog(N, line)`.
struct Syslog;

impl Syslog {
    fn open() -> Syslog {
        static IDENT: &std::ffi::CStr = c"ringmq";
        // SAFETY: openlog keeps the pointer; IDENT is static.
        unsafe { libc::openlog(IDENT.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        Syslog
    }
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (priority, line) = split_priority(buf);
        let line = String::from_utf8_lossy(line);
        if let Ok(line) = CString::new(line.trim_end().replace('\0', " ")) {
            // SAFETY: a constant format string and one NUL-terminated argument.
            unsafe { libc::syslog(priority, c"%s".as_ptr(), line.as_ptr()) };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `<N>rest` -> (N, rest); a line without a prefix is LOG_INFO.
fn split_priority(buf: &[u8]) -> (libc::c_int, &[u8]) {
    let parsed = buf.strip_prefix(b"<").and_then(|rest| {
        let end = rest.iter().position(|&b| b == b'>')?;
        let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        Some((n, &rest[end + 1..]))
    });
    parsed.unwrap_or((libc::LOG_INFO, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priority_prefix_is_split_off_and_a_line_without_one_is_info() {
        assert_eq!(split_priority(b"<3>boom\n"), (3, &b"boom\n"[..]));
        assert_eq!(split_priority(b"plain"), (libc::LOG_INFO, &b"plain"[..]));
        assert_eq!(split_priority(b"<x>odd"), (libc::LOG_INFO, &b"<x>odd"[..]));
    }
}
