//! Benchmark: a full custom-resource Create against the GitLab double with 100 ms added to every
//! request (target: 0.8 s median), next to a baseline measured in the same run: the same GitLab
//! calls made one after another, as the seed's Lambda made them.
//!
//! Run with `cargo xtask bench checkin` (or `cargo run -p seedcode-checkin --example bench_create -- RUNS`).

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use lambda_common::gitlab::{GitLab, NewCommit, NewProject, Variable};
use lambda_common::token::token_from_secret;
use seedcode_checkin::seedcode::{SeedFile, commit_actions};

const LATENCY: Duration = Duration::from_millis(100);

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).map_or(7, |n| n.parse().expect("RUNS is a number"));
    let mut concurrent = Vec::new();
    let mut sequential = Vec::new();
    let mut requests = 0;
    for _ in 0..runs {
        let stand = support::stand().await;
        stand.gitlab.set_latency(LATENCY);
        let start = Instant::now();
        let body = stand.invoke("Create", None).await;
        concurrent.push(start.elapsed());
        assert_eq!(body["Status"], "SUCCESS", "{body}");
        requests = stand.gitlab.requests().len();

        let stand = support::stand().await;
        stand.gitlab.set_latency(LATENCY);
        let start = Instant::now();
        sequential_create(&stand).await;
        sequential.push(start.elapsed());
    }
    concurrent.sort();
    sequential.sort();
    let (c, s) = (concurrent[runs / 2], sequential[runs / 2]);
    println!("checkin Create, {} ms per GitLab request, {runs} runs", LATENCY.as_millis());
    println!(
        "  concurrent (this Lambda)     median {:>6.3} s  min {:.3}  max {:.3}  ({requests} GitLab requests)",
        c.as_secs_f64(),
        concurrent[0].as_secs_f64(),
        concurrent[runs - 1].as_secs_f64()
    );
    println!("  sequential (seed's pattern)  median {:>6.3} s  (baseline)", s.as_secs_f64());
    println!("  ratio {:.2}", c.as_secs_f64() / s.as_secs_f64());
}

/// The GitLab calls of a Create, one at a time: the token's record, both projects, every
/// variable, the deploy project's pipeline-variable setting, both commits.
async fn sequential_create(stand: &support::Stand) {
    let gitlab = GitLab::new(&stand.gitlab.url(), token_from_secret("bench", support::TOKEN).unwrap()).unwrap();
    gitlab.token_record().await.unwrap();
    for (name, files) in [("build", support::build_files()), ("deploy", support::deploy_files())] {
        let path = format!("{name}-{}", stand.project_id);
        let new = NewProject {
            name: &path,
            path: &path,
            namespace_id: None,
            description: "",
            visibility: "private",
            default_branch: "main",
            initialize_with_readme: false,
        };
        let project = gitlab.create_project(&new).await.unwrap();
        for key in [
            "SAGEMAKER_PROJECT_NAME",
            "SAGEMAKER_PROJECT_ID",
            "SAGEMAKER_PROJECT_ARN",
            "AWS_REGION",
            "ARTIFACT_BUCKET",
            "MODEL_PACKAGE_GROUP_NAME",
            "AWS_ROLE_ARN",
            "ROLE_ARN",
        ] {
            let variable = Variable {
                key: key.into(),
                value: "value".into(),
                masked: false,
                hidden: false,
                protected: false,
                raw: true,
            };
            gitlab.upsert_variable(project.id, &variable).await.unwrap();
        }
        if name == "deploy" {
            gitlab.set_pipeline_variables_role(project.id, "maintainer").await.unwrap();
        }
        let files: Vec<SeedFile> = files
            .iter()
            .map(|(path, mode, content)| SeedFile {
                path: path.to_string(),
                content: content.to_vec(),
                executable: mode & 0o111 != 0,
            })
            .collect();
        let actions = commit_actions(&files);
        gitlab
            .create_commit(project.id, &NewCommit { branch: "main", commit_message: "seed", actions: &actions })
            .await
            .unwrap();
        gitlab.protect_branch(project.id, "main").await.unwrap();
    }
}
