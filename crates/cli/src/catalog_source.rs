//! Where a catalog comes from (a file, standard input or a URL) and its
//! format, for `templates import` and `templates apply`: read within the
//! server's size limit, so a huge or endless source is cut off.

use anyhow::{Context, bail};
use clap::ValueEnum;
use std::time::Duration;
use streamspace_server::template::catalog::CATALOG_BODY_LIMIT;
use url::Url;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Yaml => "application/yaml",
            Format::Json => "application/json",
        }
    }
}

/// The catalog's text, and the format its name says.
pub async fn read_source(
    client: &reqwest::Client,
    source: &str,
) -> anyhow::Result<(String, Option<Format>)> {
    let hint = format_of_name(source);
    if source == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), CATALOG_BODY_LIMIT as u64 + 1),
            &mut text,
        )
        .context("cannot read the catalog from standard input")?;
        return Ok((within_limit(text, "standard input")?, hint));
    }
    if let Ok(url) = Url::parse(source)
        && matches!(url.scheme(), "http" | "https")
    {
        return fetch(client, url)
            .await
            .map(|(text, served)| (text, hint.or(served)));
    }
    let metadata = std::fs::metadata(source).with_context(|| format!("cannot read {source}"))?;
    if metadata.len() > CATALOG_BODY_LIMIT as u64 {
        bail!(
            "{source} is larger than {} MiB, the most the server takes",
            CATALOG_BODY_LIMIT >> 20
        );
    }
    let text = std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?;
    Ok((text, hint))
}

pub fn format_of_name(name: &str) -> Option<Format> {
    let path = name
        .split(['?', '#'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    if path.ends_with(".json") {
        Some(Format::Json)
    } else if path.ends_with(".yaml") || path.ends_with(".yml") {
        Some(Format::Yaml)
    } else {
        None
    }
}

/// A catalog from a URL: bounded in size and time, read as it arrives so
/// a huge or endless answer is cut off at the limit.
async fn fetch(client: &reqwest::Client, url: Url) -> anyhow::Result<(String, Option<Format>)> {
    let mut response = client
        .get(url.clone())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("cannot fetch {url}"))?;
    if !response.status().is_success() {
        bail!("cannot fetch {url}: {}", response.status());
    }
    let served = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| match v {
            v if v.contains("json") => Some(Format::Json),
            v if v.contains("yaml") => Some(Format::Yaml),
            _ => None,
        });
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("cannot fetch {url}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > CATALOG_BODY_LIMIT {
            bail!(
                "{url} is larger than {} MiB, the most the server takes",
                CATALOG_BODY_LIMIT >> 20
            );
        }
    }
    let text = String::from_utf8(body).with_context(|| format!("{url} is not UTF-8 text"))?;
    Ok((text, served))
}

fn within_limit(text: String, what: &str) -> anyhow::Result<String> {
    if text.len() > CATALOG_BODY_LIMIT {
        bail!(
            "{what} is larger than {} MiB, the most the server takes",
            CATALOG_BODY_LIMIT >> 20
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_says_the_format() {
        assert_eq!(format_of_name("https://x/c.YML?raw=1"), Some(Format::Yaml));
        assert_eq!(format_of_name("templates.json"), Some(Format::Json));
        assert_eq!(format_of_name("catalog"), None);
    }
}
