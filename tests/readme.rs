//! The README's longer recipes are programs in `examples/` that the tests build
//! and run; this keeps each README copy the same as its example.

/// The code block of `readme` that starts with `first_line`.
fn block<'a>(readme: &'a str, first_line: &str) -> &'a str {
    let start = readme
        .find(&format!("```rust\n{first_line}\n"))
        .unwrap_or_else(|| panic!("no README block starting with {first_line:?}"))
        + "```rust\n".len();
    let len = readme[start..].find("```\n").expect("the block ends");
    &readme[start..start + len]
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
