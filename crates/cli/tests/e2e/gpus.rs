//! GPU sessions across real agents on the real Docker engine, with fake
//! inventories: agents started with `--gpus` report them, placement sends a
//! GPU session only to an agent with a free GPU, and on this engine (no
//! NVIDIA Container Toolkit, as in CI) the session fails at once with what
//! to do instead of retrying; a session asking more GPUs than any agent has
//! free is refused with a 503 that says so.

use crate::{DESKTOP, bin, require_desktop_image};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, Options};

/// An agent of this host, started with `flags`.
async fn agent(
    cp: &ControlPlane,
    admin: &Api,
    name: &str,
    flags: &[&str],
) -> anyhow::Result<(AgentProcess, String)> {
    let token = admin.enrollment_token().await?;
    let options = Options {
        args: flags.iter().map(|f| (*f).to_owned()).collect(),
        ..Options::default()
    };
    let process = AgentProcess::start_with(bin(), &cp.url, &token, name, options).await?;
    let id = admin
        .wait_for_agent(name, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", process.process.log()))?;
    Ok((process, id))
}

#[tokio::test]
async fn gpu_sessions_go_to_agents_with_free_gpus_and_fail_clearly_without_the_toolkit()
-> anyhow::Result<()> {
    require_desktop_image();
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let gpu_flags = ["--gpus", "1", "--gpu-model", "Fake GPU"];
    let (_gpu, gpu_id) = agent(&cp, &admin, "gpu-host", &gpu_flags).await?;
    let (_plain, plain_id) = agent(&cp, &admin, "cpu-host", &[]).await?;
    let _cleanup = Cleanup(vec![gpu_id.clone(), plain_id]);

    let gpu_agent = admin
        .expect(
            Method::GET,
            &format!("/api/v1/agents/{gpu_id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(gpu_agent["capacity"]["gpus"], 1, "{gpu_agent}");
    assert_eq!(gpu_agent["capacity"]["gpu_model"], "Fake GPU");
    assert_eq!(gpu_agent["capabilities"]["gpu"], true);

    admin
        .create_template(
            json!({"name": "cuda", "image": DESKTOP, "platforms": ["docker"],
                                "resources": {"cpu": "500m", "memory": "256Mi", "gpu": 1},
                                "max_resources": {"gpu": 2}}),
        )
        .await?;
    let session = admin.create_session(json!({"template": "cuda"})).await?;
    assert_eq!(
        session["agent_id"],
        gpu_id.as_str(),
        "the only agent with a GPU"
    );
    let id = session["id"].as_str().unwrap_or_default();
    let failed = admin
        .wait_for_phase(id, "Failed", Duration::from_secs(60))
        .await?;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("cannot give containers GPUs"), "{message}");
    assert!(message.contains("NVIDIA Container Toolkit"), "{message}");

    // Two GPUs: no agent has them.
    let refused = admin
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"template": "cuda", "resources": {"gpu": 2}})),
        )
        .await?;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("no online docker agent has 2 free GPUs"),
        "{error}"
    );
    Ok(())
}
