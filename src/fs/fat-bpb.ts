// The DOS boot sector and BIOS parameter block offsets that FAT, NTFS (which keeps the FAT-era
// fields at zero) and the MBR reader's "is sector 0 a boot sector?" test all read. Microsoft's
// "FAT: General Overview of On-Disk Format"; defined here once.
export const BS_JUMP = 0x00;
export const BS_OEM_NAME = 0x03;
export const BPB_BYTES_PER_SECTOR = 0x0b;
export const BPB_SECTORS_PER_CLUSTER = 0x0d;
export const BPB_RESERVED_SECTORS = 0x0e;
export const BPB_FAT_COUNT = 0x10;
export const BPB_ROOT_ENTRY_COUNT = 0x11;
export const BPB_TOTAL_SECTORS_16 = 0x13;
export const BPB_MEDIA = 0x15;
export const BPB_FAT_SECTORS_16 = 0x16;
export const BPB_TOTAL_SECTORS_32 = 0x20;
