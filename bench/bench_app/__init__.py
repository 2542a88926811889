"""The benchmark's Pixeltable app: `schema` creates the tables, `queries` defines the @pxt.query functions."""
