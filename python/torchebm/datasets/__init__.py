"""torchebm.datasets"""
