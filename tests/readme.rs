//! The README's longer recipes are programs in `examples/` that the tests build
//! and run; this keeps each README copy the same as its example.

/// The code block of `readme` that starts with `first_line`.
fn block<'a>(readme: &'a str, first_line: &str) -> &'a str {
    block_in(readme, "rust", first_line)
}

/// The `lang` code block of `readme` that starts with `first_line`.
fn block_in<'a>(readme: &'a str, lang: &str, first_line: &str) -> &'a str {
    let fence = format!("```{lang}\n");
    let start = readme
        .find(&format!("{fence}{first_line}\n"))
        .unwrap_or_else(|| panic!("no README {lang} block starting with {first_line:?}"))
        + fence.len();
    let len = readme[start..].find("```\n").expect("the block ends");
    &readme[start..start + len]
}

/// The README from `heading` to the next heading of its level or above.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no README section {heading:?}"))
        + 1;
    let level = heading.split(' ').next().unwrap_or("##");
    let end = readme[start + heading.len()..]
        .match_indices("\n#")
        .map(|(i, _)| start + heading.len() + i + 1)
        .find(|&i| {
            let hashes = readme[i..].bytes().take_while(|b| *b == b'#').count();
            hashes <= level.len()
        })
        .unwrap_or(readme.len());
    &readme[start..end]
}

#[test]
fn the_composition_recipe_shows_the_feature_it_needs() {
    let readme = include_str!("../README.md");
    let recipe = section(readme, "## Composition with `init-tracing-opentelemetry`");
    let toml = block_in(recipe, "toml", "[dependencies]");
    let line = r#"init-tracing-opentelemetry = { version = "0.44", features = ["tracing_subscriber_ext"] }"#;
    assert!(toml.contains(line), "{toml}");
    assert!(
        toml.find("```").is_none() && recipe.find(line) < recipe.find("```rust"),
        "the Cargo.toml line comes before the code"
    );
    // Our own test of the recipe builds with that feature too.
    let manifest = include_str!("../Cargo.toml");
    assert!(manifest
        .lines()
        .any(|l| l.starts_with("init-tracing-opentelemetry = ")
            && l.contains("\"tracing_subscriber_ext\"")));
}

#[test]
fn session_config_is_introduced_with_its_module_path() {
    let readme = include_str!("../README.md");
    let first = readme
        .find("SessionConfig")
        .expect("the README names SessionConfig");
    assert!(
        readme[..first].ends_with("otel_session::config::"),
        "the first SessionConfig is not otel_session::config::SessionConfig: {:?}",
        &readme[first.saturating_sub(40)..first + 20]
    );
}

#[test]
fn the_first_paragraph_promises_what_the_defaults_do() {
    let readme = include_str!("../README.md");
    let start = readme.find("**User sessions").expect("the opening");
    let first = &readme[start..start + readme[start..].find("\n\n").expect("its end")];
    let first = first.replace('\n', " ");
    // Request mode stamps no id by default (OTEL_SESSION_REQUEST_IDS=false), so
    // "a session.id on every span" is said of app and manual sessions only.
    assert!(first.contains("in app and manual mode"), "{first}");
    assert!(first.contains("`OTEL_SESSION_REQUEST_IDS=true`"), "{first}");
    let request_mode = section(readme, "### Request mode: servers");
    assert!(
        request_mode.contains("high-cardinality attribute"),
        "the request-mode section says why request ids are off by default"
    );
}

#[test]
fn the_own_providers_recipe_is_examples_own_providers_verbatim() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/own_providers.rs");
    let first = "use opentelemetry::trace::TracerProvider as _;";
    let code = &example[example.find(first).expect("the example's code")..];
    assert_eq!(
        block(readme, first),
        code,
        "README.md's recipe and examples/own_providers.rs differ: copy one onto the other"
    );
}
