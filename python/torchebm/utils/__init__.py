"""torchebm.utils"""
