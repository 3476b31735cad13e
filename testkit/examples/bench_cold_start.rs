//! Benchmark: Lambda cold start, from process start to the first poll of the Runtime API, and
//! the peak resident memory by then, for each Rust `bootstrap` and, as the baseline measured in
//! the same run, a Python process that imports what the seed's Lambdas imported (boto3 and
//! python-gitlab) before polling. Goals: at most 1/20 of Python's time and 1/3 of its memory.
//!
//! Run with `cargo xtask bench coldstart`, which builds release binaries first.
//! Arguments: RUNS PYTHON BOOTSTRAP...

use std::path::Path;
use std::time::{Duration, Instant};

use testkit::runtime_api::RuntimeApi;

/// What the seed's Python Lambdas did before their handler could run.
const PYTHON_BASELINE: &str = "import os, urllib.request\n\
import boto3, gitlab\n\
urllib.request.urlopen('http://' + os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime/invocation/next')\n";

struct Sample {
    to_first_poll: Duration,
    peak_rss_kib: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [runs, python, bootstraps @ ..] = args.as_slice() else {
        panic!("usage: bench_cold_start RUNS PYTHON BOOTSTRAP...");
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let baseline = median(measure(runs, Path::new(python), &["-c", PYTHON_BASELINE]).await);
    println!("cold start to the first Runtime API poll, median of {runs} (peak RSS at that moment)");
    report("python: import boto3, gitlab (baseline)", &baseline, None);
    for bootstrap in bootstraps {
        let sample = median(measure(runs, Path::new(bootstrap), &[]).await);
        let name = Path::new(bootstrap).file_name().unwrap().to_string_lossy().into_owned();
        report(&format!("rust: {name}"), &sample, Some(&baseline));
    }
}

async fn measure(runs: usize, program: &Path, args: &[&str]) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let api = RuntimeApi::start().await;
        let start = Instant::now();
        let mut child = api.spawn_command(program, args, &[("AWS_REGION", "us-east-1")]);
        let first_poll = loop {
            if let Some(at) = api.first_poll() {
                break at;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{} never polled", program.display());
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let pid = child.id().expect("still running");
        samples.push(Sample { to_first_poll: first_poll - start, peak_rss_kib: peak_rss_kib(pid) });
        child.kill().await.expect("stop the function");
    }
    samples
}

/// `VmHWM` of /proc/PID/status: the peak resident set size so far.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc status");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmHWM in kB")
}

/// The median of each measure, taken separately.
fn median(mut samples: Vec<Sample>) -> Sample {
    let mid = samples.len() / 2;
    samples.sort_by_key(|s| s.to_first_poll);
    let to_first_poll = samples[mid].to_first_poll;
    samples.sort_by_key(|s| s.peak_rss_kib);
    Sample { to_first_poll, peak_rss_kib: samples[mid].peak_rss_kib }
}

fn report(name: &str, sample: &Sample, baseline: Option<&Sample>) {
    let ratios = baseline.map_or(String::new(), |b| {
        format!(
            "  time ratio {:.3}, memory ratio {:.3}",
            sample.to_first_poll.as_secs_f64() / b.to_first_poll.as_secs_f64(),
            sample.peak_rss_kib as f64 / b.peak_rss_kib as f64
        )
    });
    println!(
        "  {name:<44} {:>9.2} ms  {:>7} KiB{ratios}",
        sample.to_first_poll.as_secs_f64() * 1e3,
        sample.peak_rss_kib
    );
}
