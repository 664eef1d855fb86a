//! The terminal dashboard. The only module that draws or touches the terminal.
