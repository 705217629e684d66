//! `streamspace agents` and `streamspace users`: the admin's views of the
//! fleet and the accounts (the API refuses them to anyone else, exit 4).

use crate::client::segment;
use crate::control_plane::ControlPlaneArgs;
use crate::failure::{Failure, USAGE};
use crate::output::{Column, OutputArg, col, show};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::json;
use std::io::{BufRead, IsTerminal};

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// List the agents with their status and load.
    #[command(alias = "list")]
    Ls(AgentsListArgs),
    /// Drain an agent: no new sessions land on it (`--undo` to undrain).
    Drain(DrainArgs),
}

#[derive(Args, Debug)]
pub struct AgentsListArgs {
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The agent's id.
    agent_id: String,
    /// Undrain: let new sessions land on it again.
    #[arg(long)]
    undo: bool,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// List the accounts.
    #[command(alias = "list")]
    Ls(UsersListArgs),
    /// Create an account; the password is read from standard input (a
    /// prompt on a terminal).
    Create(UserCreateArgs),
}

#[derive(Args, Debug)]
pub struct UsersListArgs {
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Role {
    User,
    Admin,
}

#[derive(Args, Debug)]
pub struct UserCreateArgs {
    username: String,
    #[arg(long, value_enum, default_value = "user")]
    role: Role,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    server: ControlPlaneArgs,
}

const AGENT_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "name"),
    col("PLATFORM", "platform"),
    col("POOL", "pool"),
    col("STATUS", "status"),
    col("DRAINING", "draining"),
    col("SESSIONS", "session_count"),
    col("REGION", "region"),
    col("VERSION", "version"),
    // Why it is degraded, last: the platform's own words can be long.
    col("REASON", "status_reason"),
];

const USER_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("USERNAME", "username"),
    col("ROLE", "role"),
];

pub async fn agents(command: AgentsCommand) -> anyhow::Result<()> {
    match command {
        AgentsCommand::Ls(args) => {
            let agents = args.server.client()?.get("/api/v1/agents").await?;
            show(args.output.output, &agents, AGENT_COLUMNS)
        }
        AgentsCommand::Drain(args) => {
            let action = if args.undo { "undrain" } else { "drain" };
            let path = format!("/api/v1/agents/{}/{action}", segment(&args.agent_id));
            let agent = args
                .server
                .client()?
                .call(Method::POST, &path, None)
                .await?;
            show(args.output.output, &agent, AGENT_COLUMNS)
        }
    }
}

pub async fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Ls(args) => {
            let users = args.server.client()?.get("/api/v1/users").await?;
            show(args.output.output, &users, USER_COLUMNS)
        }
        UsersCommand::Create(args) => {
            let client = args.server.client()?;
            let password = read_password(&args.username)?;
            let role = match args.role {
                Role::User => "user",
                Role::Admin => "admin",
            };
            let body = json!({"username": args.username, "password": password, "role": role});
            let user = client
                .call(Method::POST, "/api/v1/users", Some(&body))
                .await?;
            show(args.output.output, &user, USER_COLUMNS)
        }
    }
}

/// The new account's password: a line of standard input, or typed twice
/// (without echo) on a terminal. Never an argument, which `ps` shows.
fn read_password(username: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let read = |prompt: &str| -> anyhow::Result<String> {
        let terminal = stdin.is_terminal();
        if terminal {
            eprint!("{prompt}: ");
        }
        let hidden = terminal && crate::login::set_echo(false);
        let mut line = String::new();
        let count = stdin.lock().read_line(&mut line)?;
        if hidden {
            crate::login::set_echo(true);
            eprintln!();
        }
        if count == 0 {
            return Err(Failure::new(USAGE, "no password given on standard input").into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let password = read(&format!("Password for {username}"))?;
    if std::io::stdin().is_terminal() && read("Again")? != password {
        return Err(Failure::new(USAGE, "the passwords differ").into());
    }
    Ok(password)
}
