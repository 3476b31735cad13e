//! Captures every log line the code under test writes (JSON, as in Lambda), so a test can scan
//! them, for secrets above all. One capture per test process; tests share it.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static CAPTURED: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        buffer().lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn buffer() -> &'static Mutex<Vec<u8>> {
    CAPTURED.get_or_init(|| Mutex::new(Vec::new()))
}

/// Installs the capture as the process's tracing subscriber (once); call before the code runs.
pub fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| tracing_subscriber::fmt().json().with_writer(|| Capture).init());
}

/// Everything logged so far in this process.
pub fn captured() -> String {
    String::from_utf8_lossy(&buffer().lock().expect("log buffer")).into_owned()
}
