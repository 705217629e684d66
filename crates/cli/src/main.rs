//! `streamspace`: one binary for the control plane, agents, the all-in-one
//! home-lab mode, the native-VNC-client bridge, and the user and admin CLI
//! (`login`, `sessions`, `templates`, `agents`, `users`; docs/CLI.md).

mod admin;
mod agent;
mod agent_args;
mod catalog_source;
mod client;
mod config;
mod connect;
mod control_plane;
mod failure;
mod image;
mod kubernetes;
mod libvirt;
mod login;
mod oidc_args;
mod output;
mod progress;
mod server;
mod sessions;
mod shutdown;
mod template_apply;
mod templates;
mod tracing_args;
mod trust;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "streamspace",
    version,
    about = "Stream containerised desktop apps to a browser"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API, web UI, agent hub, VNC proxy).
    Server(server::ServerArgs),
    /// Run an agent next to a platform; it connects out to the control plane.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Run everything in one process on this Docker host: control plane,
    /// embedded Docker agent, SQLite, and the demo desktop template.
    Up(server::ServerArgs),
    /// Log in to a control plane and store an API token for the commands
    /// below (docs/CLI.md).
    Login(login::LoginArgs),
    /// Revoke and forget the stored API token.
    Logout(login::LogoutArgs),
    /// Your sessions: list, create, get, hibernate, wake, rm, logs, open.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Open a local TCP port for a native VNC client, tunnelled to a session.
    Connect(connect::ConnectArgs),
    /// Templates: list, get, apply; import and export catalogs
    /// (docs/CATALOG.md).
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Agents (admins): list, drain.
    #[command(subcommand)]
    Agents(admin::AgentsCommand),
    /// Accounts (admins): list, create.
    #[command(subcommand)]
    Users(admin::UsersCommand),
    /// Build a demo image (desktop, full-desktop or webvnc) from Debian
    /// packages (no registry needed).
    BuildImage(image::BuildImageArgs),
    /// Print the API's OpenAPI document (what GET /api/v1/openapi.json
    /// serves), without starting a server.
    Openapi,
}

impl Command {
    /// Where the command exports traces, and as which service: only the
    /// long-running ones can.
    fn tracing(&self) -> streamspace_telemetry::Settings {
        let (args, service) = match self {
            Command::Server(args) => (args.tracing.clone(), "streamspace-server"),
            Command::Up(args) => (args.tracing.clone(), "streamspace"),
            Command::Agent(command) => (command.tracing(), "streamspace-agent"),
            _ => (tracing_args::TracingArgs::default(), "streamspace-cli"),
        };
        args.settings(service)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS crypto provider for every rustls user in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let telemetry = match streamspace_telemetry::init(&cli.command.tracing()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::from(failure::USAGE);
        }
    };
    let result = match cli.command {
        Command::Server(args) => server::run_server(args).await,
        Command::Agent(command) => agent::run(command).await,
        Command::Up(args) => server::run_up(args).await,
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(args).await,
        Command::Sessions(command) => sessions::run(command).await,
        Command::Connect(args) => connect::run(args).await,
        Command::Templates(command) => templates::run(command).await,
        Command::Agents(command) => admin::agents(command).await,
        Command::Users(command) => admin::users(command).await,
        Command::BuildImage(args) => image::run(args).await,
        Command::Openapi => print_openapi(),
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // Documented codes (failure.rs, docs/CLI.md) scripts can rely on.
            std::process::ExitCode::from(failure::exit_code(&err))
        }
    }
}

/// `ui/openapi.json` is this output (the web UI's types are generated from it).
fn print_openapi() -> anyhow::Result<()> {
    use std::io::Write;
    let json = streamspace_server::api::openapi_json()?;
    // Not `println!`, which panics when the reader has gone (`| head`);
    // a reader that has gone wanted no more.
    match writeln!(std::io::stdout().lock(), "{json}") {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}
