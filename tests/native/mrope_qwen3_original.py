"""Qwen3-VL's M-RoPE position ids transcribed from the original published code (Qwen3-VL's `get_rope_index` as
released with the models, transformers 4.57), kept independent of engine.native.

Qwen3-VL writes each temporal patch's timestamp as text: `<t> <|vision_start|> patch <|vision_end|>` per
patch, so the video grids are first split into one [1, h, w] grid per patch. Then, per row, from one vision
segment to the next (segments found by their token ids, counted by the <|vision_start|> before them): the
text before a segment starts at max(previous positions) + 1, and the segment's tokens sit at text start +
text length + (t, h, w) over its merged grid. Masked slots hold 1; deltas are max + 1 - the row's full length.
"""
import torch


def qwen3_rope_index(input_ids, image_grid_thw=None, video_grid_thw=None, attention_mask=None, *,
                     spatial_merge_size, image_token_id, video_token_id, vision_start_token_id):
    if video_grid_thw is not None:
        video_grid_thw = torch.repeat_interleave(video_grid_thw, video_grid_thw[:, 0], dim=0)
        video_grid_thw[:, 0] = 1
    if image_grid_thw is None and video_grid_thw is None:
        if attention_mask is None:
            pos = torch.arange(input_ids.shape[1]).view(1, 1, -1).expand(3, input_ids.shape[0], -1)
            return pos.clone(), torch.zeros(input_ids.shape[0], 1, dtype=input_ids.dtype)
        pos = attention_mask.long().cumsum(-1) - 1
        pos.masked_fill_(attention_mask == 0, 1)
        pos = pos.unsqueeze(0).expand(3, -1, -1).clone()
        return pos, pos.max(0)[0].max(-1, keepdim=True)[0] + 1 - attention_mask.shape[-1]

    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    position_ids = torch.ones(3, *input_ids.shape, dtype=input_ids.dtype)
    image_index = video_index = 0
    deltas = []
    for i, row in enumerate(input_ids):
        row = row[attention_mask[i] == 1]
        starts = torch.argwhere(row == vision_start_token_id).squeeze(1)
        after = row[starts + 1]
        images, videos = int((after == image_token_id).sum()), int((after == video_token_id).sum())
        tokens = row.tolist()
        pieces, st = [], 0
        for _ in range(images + videos):
            ed_image = tokens.index(image_token_id, st) if image_token_id in tokens and images > 0 else len(tokens) + 1
            ed_video = tokens.index(video_token_id, st) if video_token_id in tokens and videos > 0 else len(tokens) + 1
            if ed_image < ed_video:
                t, h, w = image_grid_thw[image_index]
                image_index += 1
                images -= 1
                ed = ed_image
            else:
                t, h, w = video_grid_thw[video_index]
                video_index += 1
                videos -= 1
                ed = ed_video
            gt, gh, gw = t.item(), h.item() // spatial_merge_size, w.item() // spatial_merge_size
            text_len = ed - st
            st_idx = pieces[-1].max() + 1 if pieces else 0
            pieces.append(torch.arange(text_len).view(1, -1).expand(3, -1) + st_idx)
            t_index = torch.arange(gt).view(-1, 1).expand(-1, gh * gw).flatten()  # 0: one patch per segment
            h_index = torch.arange(gh).view(1, -1, 1).expand(gt, -1, gw).flatten()
            w_index = torch.arange(gw).view(1, 1, -1).expand(gt, gh, -1).flatten()
            pieces.append(torch.stack([t_index, h_index, w_index]) + text_len + st_idx)
            st = ed + gt * gh * gw
        if st < len(tokens):
            st_idx = pieces[-1].max() + 1 if pieces else 0
            pieces.append(torch.arange(len(tokens) - st).view(1, -1).expand(3, -1) + st_idx)
        positions = torch.cat(pieces, dim=1).reshape(3, -1)
        position_ids[..., i, attention_mask[i] == 1] = positions.to(position_ids.dtype)
        deltas.append(positions.max() + 1 - len(input_ids[i]))
    return position_ids, torch.tensor(deltas).unsqueeze(1)
