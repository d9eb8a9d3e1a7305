//! The Markdown documents render as written: parsed with a CommonMark parser
//! (pulldown-cmark, with GitHub's tables), the way GitHub or any viewer would show them.
//! A stray or unbalanced fence turns everything after it into one code block; these
//! tests catch that and its usual symptoms.

use std::ops::Range;
use std::path::{Path, PathBuf};

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag};

/// Every Markdown file of the repository that people read.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"]
        .iter()
        .map(|name| root.join(name))
        .collect();
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        docs.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md")),
        );
    }
    docs.retain(|p| p.exists());
    docs
}

/// One fenced or indented code block: its info string and the source lines it covers.
struct CodeBlock {
    info: Option<String>,
    range: Range<usize>,
}

/// What the parser made of a document.
struct Rendered {
    code_blocks: Vec<CodeBlock>,
    headings: usize,
    tables: usize,
}

fn render(text: &str) -> Rendered {
    let mut rendered = Rendered {
        code_blocks: Vec::new(),
        headings: 0,
        tables: 0,
    };
    let parser = Parser::new_ext(text, Options::ENABLE_TABLES).into_offset_iter();
    for (event, range) in parser {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => rendered.code_blocks.push(CodeBlock {
                info: match kind {
                    CodeBlockKind::Fenced(info) => Some(info.to_string()),
                    CodeBlockKind::Indented => None,
                },
                range,
            }),
            Event::Start(Tag::Heading { .. }) => rendered.headings += 1,
            Event::Start(Tag::Table(_)) => rendered.tables += 1,
            _ => {}
        }
    }
    rendered
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Problems a viewer would show; empty when the document renders as written.
fn problems(text: &str) -> Vec<String> {
    let rendered = render(text);
    let mut found = Vec::new();
    for block in &rendered.code_blocks {
        let start = line_of(text, block.range.start);
        let end = line_of(text, block.range.end);
        let body = &text[block.range.clone()];
        match &block.info {
            // Every fence of ours names its language: one that does not is usually a
            // closing fence without an opening one, and everything after it is code.
            Some(info) if info.trim().is_empty() => found.push(format!(
                "line {start}: a code block without a language runs to line {end} (a stray fence?)"
            )),
            None => found.push(format!(
                "line {start}: an indented code block (lines {start}-{end}); use a fence"
            )),
            _ => {}
        }
        if let Some(line) = body
            .lines()
            .skip(1)
            .find(|l| l.starts_with("## ") || l.starts_with("### "))
        {
            found.push(format!(
                "line {start}: the code block up to line {end} swallows the heading {line:?}"
            ));
        }
        if block.range.end >= text.trim_end().len() && !body.trim_end().ends_with("```") {
            found.push(format!(
                "line {start}: a code block is never closed (it runs to the end)"
            ));
        }
    }
    // Headings and tables in the source that did not render as such.
    let in_code = |offset: usize| {
        rendered
            .code_blocks
            .iter()
            .any(|b| b.range.contains(&offset))
    };
    let mut offset = 0;
    let (mut heading_lines, mut table_rules) = (0, 0);
    for line in text.split_inclusive('\n') {
        if !in_code(offset) {
            let trimmed = line.trim_end();
            if trimmed.starts_with('#') && trimmed.trim_start_matches('#').starts_with(' ') {
                heading_lines += 1;
            }
            if trimmed.starts_with("|--")
                || trimmed.starts_with("| --")
                || trimmed.starts_with("|:-")
            {
                table_rules += 1;
            }
        }
        offset += line.len();
    }
    if heading_lines != rendered.headings {
        found.push(format!(
            "{heading_lines} heading lines outside code, {} rendered headings",
            rendered.headings
        ));
    }
    if table_rules != rendered.tables {
        found.push(format!(
            "{table_rules} table rules outside code, {} rendered tables",
            rendered.tables
        ));
    }
    found
}

#[test]
fn every_markdown_document_renders_as_written() {
    let docs = documents();
    assert!(docs.len() >= 3, "{docs:?}");
    let mut report = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for problem in problems(&text) {
            report.push(format!("{}: {problem}", doc.display()));
        }
    }
    assert!(report.is_empty(), "\n{}", report.join("\n"));
}

#[test]
fn the_check_catches_a_stray_fence_and_an_unclosed_one() {
    let good = "# Title\n\n```sh\namber serve\n```\n\n## Next\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
    assert!(problems(good).is_empty(), "{:?}", problems(good));
    // The README's old mistake: a closing fence without an opening one.
    let stray = "# Title\n\n```sh\namber serve\n```\n\ntext\namber healthcheck\n```\n\n## HTTP API\n\n| a | b |\n|---|---|\n\n```json\n{}\n```\n";
    let found = problems(stray);
    assert!(found.iter().any(|p| p.contains("stray fence")), "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("swallows the heading")),
        "{found:?}"
    );
    let unclosed = "# Title\n\n```sh\namber serve\n\n## Next\n";
    let found = problems(unclosed);
    assert!(
        found.iter().any(|p| p.contains("never closed")),
        "{found:?}"
    );
}

/// Issue 11 point 1: systemd's default of 1,024 open files let a slow-body attack deny
/// service; the shipped unit raises it so the derived connection cap (an eighth below the
/// file limit, at most 4,096) is the full 4,096.
#[test]
fn the_shipped_unit_raises_the_open_file_limit_above_the_connection_cap() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/amber.service"))
            .expect("docs/amber.service");
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        limit - limit / 8 >= 4096,
        "LimitNOFILE={limit} leaves the cap below 4,096"
    );
}
