"""A dynaflow plugin: audits every machine the core demo workflow creates."""
