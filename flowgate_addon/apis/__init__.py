"""Wire formats FlowGate understands, one module per format."""
