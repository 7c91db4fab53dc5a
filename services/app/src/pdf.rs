//! The take-home plan as a printable PDF, A4 or US Letter. Written with `pdf-writer` and the
//! standard Helvetica faces (every PDF reader has them, so no font is embedded and the file
//! stays a few kilobytes); lines are broken with Helvetica's own character widths, so text
//! never runs off the page.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use crate::take_home::TakeHome;

/// The paper the clinic prints on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paper {
    A4,
    Letter,
}

impl Paper {
    /// Width and height in points.
    fn size(self) -> (f32, f32) {
        match self {
            Paper::A4 => (595.0, 842.0),
            Paper::Letter => (612.0, 792.0),
        }
    }

    /// `a4` or `letter` (a query parameter's value).
    pub fn parse(s: &str) -> Option<Paper> {
        match s.to_ascii_lowercase().as_str() {
            "a4" => Some(Paper::A4),
            "letter" => Some(Paper::Letter),
            _ => None,
        }
    }
}

const MARGIN: f32 = 56.0;
const REGULAR: Name = Name(b"F1");
const BOLD: Name = Name(b"F2");

/// Helvetica's advance widths (per 1000 units of the font size) for ASCII 32–126, from its
/// Adobe font metrics.
const WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Width of `text` in points at `size`; bold faces are a little wider, so they are allowed
/// for generously.
fn width(text: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            n @ 32..=126 => u32::from(WIDTHS[(n - 32) as usize]),
            _ => 600,
        })
        .sum();
    units as f32 * size / 1000.0 * if bold { 1.08 } else { 1.0 }
}

/// The text in WinAnsiEncoding (the encoding the fonts are declared with): Latin-1 as is,
/// typographic dashes, quotes and the bullet at their Windows-1252 places, anything else `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{ff}' => c as u8,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201c}' => 0x93,
            '\u{201d}' => 0x94,
            '\u{2022}' => 0x95,
            _ => b'?',
        })
        .collect()
}

/// Lines of at most `room` points.
fn wrap(text: &str, size: f32, bold: bool, room: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let tried = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if width(&tried, size, bold) > room && !line.is_empty() {
            lines.push(std::mem::replace(&mut line, word.to_owned()));
        } else {
            line = tried;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Pages of text laid out top to bottom.
struct Layout {
    paper: (f32, f32),
    pages: Vec<Content>,
    y: f32,
}

impl Layout {
    fn new(paper: Paper) -> Layout {
        let size = paper.size();
        Layout {
            paper: size,
            pages: vec![Content::new()],
            y: size.1 - MARGIN,
        }
    }

    fn room(&self) -> f32 {
        self.paper.0 - 2.0 * MARGIN
    }

    fn line(&mut self, text: &str, size: f32, bold: bool, indent: f32) {
        let lead = size * 1.35;
        if self.y - lead < MARGIN {
            self.pages.push(Content::new());
            self.y = self.paper.1 - MARGIN;
        }
        self.y -= lead;
        let page = self.pages.last_mut().expect("a page");
        page.begin_text();
        page.set_font(if bold { BOLD } else { REGULAR }, size);
        page.next_line(MARGIN + indent, self.y);
        page.show(Str(&win_ansi(text)));
        page.end_text();
    }

    fn paragraph(&mut self, text: &str, size: f32, bold: bool) {
        for l in wrap(text, size, bold, self.room()) {
            self.line(&l, size, bold, 0.0);
        }
    }

    fn bullet(&mut self, text: &str, size: f32) {
        let indent = 14.0;
        for (i, l) in wrap(text, size, false, self.room() - indent)
            .into_iter()
            .enumerate()
        {
            if i == 0 {
                self.line(&format!("\u{2022}  {l}"), size, false, 0.0);
            } else {
                self.line(&l, size, false, indent);
            }
        }
    }

    fn gap(&mut self, points: f32) {
        self.y -= points;
    }
}

/// The day as the patient reads it: "Monday 7 December".
pub fn weekday(d: time::Date) -> String {
    d.format(time::macros::format_description!(
        "[weekday] [day padding:none] [month repr:long]"
    ))
    .unwrap_or_else(|_| d.to_string())
}

/// The take-home plan as a PDF on `paper`.
pub fn render(home: &TakeHome, paper: Paper) -> Vec<u8> {
    let mut l = Layout::new(paper);
    l.paragraph(&format!("Your plan: {}", home.title), 20.0, true);
    l.paragraph(
        &format!("From {}", stride_guideline::display::day(home.from)),
        11.0,
        false,
    );
    l.gap(8.0);
    l.paragraph(&home.summary, 13.0, false);
    for (heading, items) in [("What to do", &home.to_do), ("What not to do", &home.avoid)] {
        if items.is_empty() {
            continue;
        }
        l.gap(10.0);
        l.paragraph(heading, 15.0, true);
        for i in items {
            l.bullet(i, 12.0);
        }
    }
    if !home.calendar.is_empty() {
        l.gap(10.0);
        l.paragraph("Your next two weeks", 15.0, true);
        for d in &home.calendar {
            l.line(
                &format!("{}:  {}", weekday(d.day), d.label),
                12.0,
                d.session,
                0.0,
            );
        }
    }
    l.gap(10.0);
    l.paragraph("Stop and call", 15.0, true);
    l.paragraph(&home.stop, 12.0, true);
    l.gap(10.0);
    l.paragraph("When to come back", 15.0, true);
    l.paragraph(&home.come_back, 12.0, false);
    if !home.sources.is_empty() {
        l.gap(14.0);
        l.paragraph("Where this advice comes from", 10.0, true);
        for (i, s) in home.sources.iter().enumerate() {
            l.paragraph(&format!("[{}] {s}", i + 1), 9.0, false);
        }
    }
    l.gap(6.0);
    l.paragraph(
        &format!("{} — version {}", home.guideline, home.version),
        8.0,
        false,
    );
    finish(l, &format!("Your plan: {}", home.title))
}

fn finish(layout: Layout, title: &str) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let (regular, bold, info) = (Ref::new(3), Ref::new(4), Ref::new(5));
    let first_page = 6;
    let pages: Vec<Ref> = (0..layout.pages.len())
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    pdf.catalog(catalog)
        .pages(tree)
        .lang(TextStr("en"))
        .finish();
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("Stride"));
    pdf.pages(tree)
        .kids(pages.iter().copied())
        .count(pages.len() as i32);
    for (face, id) in [
        (b"Helvetica".as_slice(), regular),
        (b"Helvetica-Bold", bold),
    ] {
        pdf.type1_font(id)
            .base_font(Name(face))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    let (w, h) = layout.paper;
    for (content, page_id) in layout.pages.into_iter().zip(&pages) {
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, w, h))
            .parent(tree)
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(REGULAR, regular)
            .pair(BOLD, bold);
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_the_page_and_keep_every_word() {
        let text = "Run for 30 to 60 seconds, then walk for 60 seconds. Do this a few times. \
                    Supercalifragilisticexpialidocious words stay whole.";
        let room = 120.0;
        let lines = wrap(text, 12.0, false, room);
        assert!(lines.len() > 2);
        for l in &lines {
            assert!(
                width(l, 12.0, false) <= room || !l.contains(' '),
                "{l} is wider than {room} points"
            );
        }
        assert_eq!(
            lines.join(" "),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn text_is_encoded_for_the_declared_fonts() {
        assert_eq!(win_ansi("a–b °C ✓"), b"a\x96b \xb0C ?".to_vec());
    }
}
