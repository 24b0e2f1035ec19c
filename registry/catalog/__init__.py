"""Models, versions, stages, aliases, tags, traffic policies and the audit chain: the entities
(domain), the commands (commands), the pure decisions per area (models, versions, stages,
aliases, traffic, with decisions for what they share), the typed operations a store applies
(changes), and the use cases (service, registration)."""
