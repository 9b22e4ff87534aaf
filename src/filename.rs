//! Client-supplied file names, reduced to safe metadata.

/// The longest sanitised name kept, in bytes (longer names keep their extension).
pub const MAX_NAME_LEN: usize = 255;

/// Reduces a client's file name to a safe display name: the last path component only (both `/`
/// and `\` separate), no control characters or NUL, no leading dots, at most
/// [`MAX_NAME_LEN`] bytes with the extension kept. Returns `None` when nothing usable is left.
///
/// The result is metadata. Storage keys are always server-generated [`UploadId`](crate::UploadId)s.
pub fn sanitize(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') { '_' } else { c })
        .collect();
    // Dots and spaces in any mix: ". .bashrc" is still a hidden file once a space is trimmed.
    let cleaned = cleaned.trim_start_matches(|c: char| c == '.' || c.is_whitespace()).trim_end();
    if cleaned.is_empty() {
        return None;
    }
    Some(truncate_keeping_extension(cleaned, MAX_NAME_LEN))
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = match name.rfind('.') {
        Some(i) if name.len() - i <= 16 => &name[i..],
        _ => "",
    };
    let mut cut = max - ext.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", name[..cut].trim_end(), ext)
}

/// The extension of a sanitised name, lowercased, if it has one.
pub fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_paths_and_traversal() {
        assert_eq!(sanitize("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize("/etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize("C:\\Windows\\system32\\cmd.exe").as_deref(), Some("cmd.exe"));
        assert_eq!(sanitize("..").as_deref(), None);
        assert_eq!(sanitize("dir/").as_deref(), None);
        assert_eq!(sanitize(".bashrc").as_deref(), Some("bashrc"));
    }

    #[test]
    fn no_leading_dot_hides_behind_spaces_or_control_characters() {
        // Found by fuzz/filename and fuzz/content_disposition: dots, then spaces, then dots.
        let cases = [
            (". .bashrc", Some("bashrc")),
            ("  ..  \0..été.tar.gz", Some("été.tar.gz")),
            ("../. .2Fetc", Some("2Fetc")),
            (". . .", None),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn removes_nul_and_control_characters() {
        assert_eq!(sanitize("evil\0.png").as_deref(), Some("evil.png"));
        assert_eq!(sanitize("a\r\nb.txt").as_deref(), Some("ab.txt"));
        assert_eq!(sanitize("\0\0").as_deref(), None);
    }

    #[test]
    fn bounds_long_names_and_keeps_the_extension() {
        let long = format!("{}.png", "é".repeat(5000));
        let name = sanitize(&long).unwrap();
        assert!(name.len() <= MAX_NAME_LEN);
        assert!(name.ends_with(".png"));
    }

    #[test]
    fn a_shortened_name_does_not_end_in_a_space() {
        // Found by fuzz/filename: sanitising such a name again changed it.
        let cases = [
            (format!("{} {}", "a".repeat(254), "b".repeat(50)), "a".repeat(254)),
            (format!("{} {}.png", "a".repeat(250), "b".repeat(50)), format!("{}.png", "a".repeat(250))),
        ];
        for (raw, want) in cases {
            let name = sanitize(&raw).unwrap();
            assert_eq!(name, want);
            assert_eq!(sanitize(&name).as_deref(), Some(name.as_str()));
        }
    }

    #[test]
    fn finds_extensions() {
        assert_eq!(extension("a.PNG").as_deref(), Some("png"));
        assert_eq!(extension("archive.tar.gz").as_deref(), Some("gz"));
        assert_eq!(extension("README"), None);
    }
}
