//! The reason codes in the documentation are exactly `Reason::ALL`, generated from it.
//! `AUTHGATE_UPDATE_DOCS=1 cargo nextest run reasons` rewrites the section.

use crate::support::repo_root;
use authgate::reason::Reason;

const START: &str = "<!-- reason codes: generated from src/reason.rs -->\n";
const END: &str = "<!-- end of reason codes -->";

fn table() -> String {
    let mut out = String::from("| code | meaning |\n|---|---|\n");
    for reason in Reason::ALL {
        out.push_str(&format!("| `{}` | {} |\n", reason.as_str(), reason.description().trim()));
    }
    out
}

#[test]
fn the_documented_reason_codes_are_the_enum() {
    let path = repo_root().join("docs/observability.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(START).expect("docs/observability.md has the reason-code markers") + START.len();
    let end = text[start..].find(END).expect("end marker") + start;
    let expected = table();
    if std::env::var_os("AUTHGATE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{}{}", &text[..start], expected, &text[end..])).unwrap();
        return;
    }
    assert_eq!(&text[start..end], expected, "regenerate with AUTHGATE_UPDATE_DOCS=1");
}
