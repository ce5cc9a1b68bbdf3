"""torchebm.losses"""
