"""Chapter 1 of the guide, data flow: pipelines (1.1), reactive streams with backpressure
(1.2), and state propagation with CRDTs and gossip (1.3)."""
