//! Plan output: text, JSON, Graphviz dot, Mermaid.
