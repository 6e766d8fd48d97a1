//! Where `badfd trace` writes its lines: stdout, stderr or a file, one whole
//! line per write, so that lines never break into a command's own output.

use std::{
    io::{IsTerminal, Write},
    os::fd::AsFd,
    path::Path,
};

use anyhow::Context as _;

pub enum Output {
    Stdout(std::io::Stdout),
    Stderr(std::io::Stderr),
    File(std::fs::File),
}

impl Output {
    /// The file at `path` (created, `--output`), else stdout, or stderr when
    /// a command is traced (its stdout stays its own).
    pub fn open(path: Option<&Path>, command_given: bool) -> anyhow::Result<Output> {
        Ok(match path {
            Some(path) => Output::File(std::fs::File::create(path).with_context(|| format!("--output {}", path.display()))?),
            None if !command_given => Output::Stdout(std::io::stdout()),
            None => Output::Stderr(std::io::stderr()),
        })
    }

    pub fn is_terminal(&self) -> bool {
        match self {
            Output::Stdout(s) => s.is_terminal(),
            Output::Stderr(s) => s.is_terminal(),
            Output::File(f) => f.is_terminal(),
        }
    }

    /// Columns of the terminal, asked again for every batch so that a resized
    /// window is followed.
    pub fn terminal_width(&self) -> Option<usize> {
        let size = match self {
            Output::Stdout(s) => terminal_size::terminal_size_of(s.as_fd()),
            Output::Stderr(s) => terminal_size::terminal_size_of(s.as_fd()),
            Output::File(f) => terminal_size::terminal_size_of(f.as_fd()),
        };
        size.map(|(w, _)| w.0 as usize).filter(|&w| w > 0)
    }

    /// Writes one whole line with one write call.
    pub fn line(&mut self, mut line: String) -> std::io::Result<()> {
        line.push('\n');
        match self {
            Output::Stdout(s) => s.lock().write_all(line.as_bytes()),
            Output::Stderr(s) => s.lock().write_all(line.as_bytes()),
            Output::File(f) => f.write_all(line.as_bytes()),
        }
    }
}
