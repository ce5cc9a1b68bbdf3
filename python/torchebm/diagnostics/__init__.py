"""torchebm.diagnostics"""
