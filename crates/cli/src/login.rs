//! `streamspace login` and `logout`: trade a username and password (and a
//! TOTP code when the account has MFA) for a named API token, stored with
//! the server's URL in the config file (`config.rs`) so that later commands
//! need neither `--server` nor `--token`.

use crate::client::Client;
use crate::config::{self, StoredLogin};
use crate::failure::{AUTH, Failure, USAGE};
use crate::trust::CaCertArg;
use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use url::Url;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// URL of the control plane.
    #[arg(long, env = "STREAMSPACE_SERVER")]
    server: Url,
    /// Your username (asked for if not given).
    #[arg(long, short)]
    username: Option<String>,
    /// The API token's name (default: `cli on HOST at TIME`).
    #[arg(long)]
    token_name: Option<String>,
    /// How long the API token lives, from 1m to 366d.
    #[arg(long, default_value = "90d")]
    expires_in: String,
    #[command(flatten)]
    ca: CaCertArg,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Forget the stored token without revoking it on the server.
    #[arg(long)]
    keep_token: bool,
    #[command(flatten)]
    ca: CaCertArg,
}

/// Reads answers from the terminal (the password without echo) or, when
/// standard input is not one, a line each from it: scripts pipe them in.
struct Prompter {
    terminal: bool,
    lines: std::io::StdinLock<'static>,
}

impl Prompter {
    fn new() -> Self {
        Self {
            terminal: std::io::stdin().is_terminal(),
            lines: std::io::stdin().lock(),
        }
    }

    fn ask(&mut self, question: &str, secret: bool) -> anyhow::Result<String> {
        if self.terminal {
            eprint!("{question}: ");
            std::io::stderr().flush()?;
        }
        let hidden = secret && self.terminal && set_echo(false);
        let mut line = String::new();
        let read = self.lines.read_line(&mut line);
        if hidden {
            set_echo(true);
            eprintln!();
        }
        if read.context("cannot read standard input")? == 0 {
            return Err(
                Failure::new(USAGE, format!("no {question} given on standard input")).into(),
            );
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// Turns the terminal's echo off or on (`stty`); whether that worked.
pub fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let anonymous = Client::new(args.server.clone(), String::new(), &args.ca)?;
    let mut prompter = Prompter::new();
    let username = match args.username {
        Some(username) => username,
        None => prompter.ask("Username", false)?,
    };
    let password = prompter.ask("Password", true)?;
    let session = password_login(&anonymous, &username, &password, &mut prompter).await?;
    let login_token = session["token"].as_str().unwrap_or_default().to_owned();
    let as_login = Client::new(args.server.clone(), login_token, &args.ca)?;
    let name = args.token_name.unwrap_or_else(default_token_name);
    let body = json!({"name": name, "expires_in": args.expires_in});
    let created = as_login
        .call(Method::POST, "/api/v1/users/me/tokens", Some(&body))
        .await;
    // The login was only the way to the API token: it ends either way.
    let _ = as_login
        .call(Method::POST, "/api/v1/auth/logout", None)
        .await;
    let created = created.context("cannot create the CLI's API token")?;
    let stored = StoredLogin {
        server: args.server.clone(),
        token: created["token"].as_str().unwrap_or_default().to_owned(),
    };
    let path = config::save(&stored)?;
    eprintln!(
        "Logged in to {} as {username}. API token {:?} (expires {}) stored in {}.",
        args.server,
        created["name"].as_str().unwrap_or_default(),
        created["expires_at"].as_str().unwrap_or_default(),
        path.display()
    );
    Ok(())
}

/// `POST /auth/login`, then the TOTP step if the account asks for one.
async fn password_login(
    client: &Client,
    username: &str,
    password: &str,
    prompter: &mut Prompter,
) -> anyhow::Result<Value> {
    let body = json!({"username": username, "password": password});
    let answer = client
        .call(Method::POST, "/api/v1/auth/login", Some(&body))
        .await?;
    if answer["mfa_required"] != true {
        return Ok(answer);
    }
    let code = prompter.ask("Authentication code (or a recovery code)", false)?;
    let body = json!({"challenge": answer["challenge"], "code": code.trim()});
    client
        .call(Method::POST, "/api/v1/auth/login/mfa", Some(&body))
        .await
}

/// `cli on HOST at 2026-12-01T23:59:00Z`: unique per login, and says
/// where the token lives when a user reviews their tokens.
fn default_token_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into());
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let name = format!("cli on {host} at {at}");
    name.chars().take(64).collect()
}

/// Revokes the stored token (`POST /auth/logout` with it) and forgets it.
pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let Some(stored) = config::load()? else {
        return Err(Failure::new(AUTH, "not logged in: there is no stored login").into());
    };
    if !args.keep_token {
        let client = Client::new(stored.server.clone(), stored.token.clone(), &args.ca)?;
        match client.call(Method::POST, "/api/v1/auth/logout", None).await {
            Ok(_) => {}
            // Already revoked or expired: nothing left to end.
            Err(err) if crate::failure::exit_code(&err) == AUTH => {}
            Err(err) => {
                return Err(err.context("cannot revoke the stored token (nothing was forgotten)"));
            }
        }
    }
    config::remove()?;
    eprintln!("Logged out of {}.", stored.server);
    Ok(())
}
