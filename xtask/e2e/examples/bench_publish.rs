//! Benchmark: `cargo xtask publish` when nothing changed, against moto in server mode: median
//! wall time and the number of AWS requests, next to a baseline measured in the same run: a
//! first publish to an empty bucket, which uploads everything and creates the product.
//!
//! Run with `cargo xtask bench publish` (it packages first). Arguments: RUNS XTASK DIST

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::moto::{REGION, moto};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [runs, xtask, dist] = args.as_slice() else { panic!("usage: bench_publish RUNS XTASK DIST") };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let sdk = moto().sdk_config();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    // publish refuses an account where SageMaker project templates were never enabled.
    testkit::moto::enable_sagemaker_projects(&aws_sdk_iam::Client::new(&sdk)).await.expect("SageMaker's products role");

    let (mut first, mut again) = (Vec::new(), Vec::new());
    let (mut first_requests, mut again_requests) = (0, 0);
    for run in 0..runs {
        let bucket = format!("bench-publish-{}-{run}", std::process::id());
        testkit::moto::create_artifact_bucket(&s3, &bucket).await.expect("create the bucket");
        let product = format!("Benchmark {bucket}");
        let (elapsed, published) = publish(xtask, dist, &bucket, &product);
        first.push(elapsed);
        first_requests = published["aws_requests"].as_u64().unwrap();
        let (elapsed, published) = publish(xtask, dist, &bucket, &product);
        assert_eq!(published["bytes_uploaded"], 0, "a no-change publish uploaded something");
        assert_eq!(published["version_created"], false);
        again.push(elapsed);
        again_requests = published["aws_requests"].as_u64().unwrap();
    }
    first.sort();
    again.sort();
    let (a, f) = (again[runs / 2], first[runs / 2]);
    println!("cargo xtask publish against moto, {runs} runs");
    println!(
        "  nothing changed            median {:>7.3} s  ({again_requests} AWS requests, 0 bytes uploaded)",
        a.as_secs_f64()
    );
    println!("  first publish (baseline)   median {:>7.3} s  ({first_requests} AWS requests)", f.as_secs_f64());
    println!("  ratio {:.2}", a.as_secs_f64() / f.as_secs_f64());
}

fn publish(xtask: &str, dist: &str, bucket: &str, product: &str) -> (Duration, Value) {
    let mut command = Command::new(xtask);
    // A developer benches the tree they have, committed or not.
    command.args(["publish", "--bucket", bucket, "--region", REGION, "--product-name", product, "--dist", dist]);
    command.arg("--allow-dirty");
    for (key, value) in moto().lambda_env() {
        command.env(key, value);
    }
    let start = Instant::now();
    let output = command.output().expect("run xtask");
    let elapsed = start.elapsed();
    assert!(output.status.success(), "publish failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let published = std::fs::read(Path::new(dist).join("publish.json")).expect("publish.json");
    (elapsed, serde_json::from_slice(&published).unwrap())
}
