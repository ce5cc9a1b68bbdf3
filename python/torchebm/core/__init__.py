"""torchebm.core"""
