"""torchebm.samplers"""
